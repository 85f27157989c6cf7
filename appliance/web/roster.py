"""The Roster page (Admin: employees:write): each source's last sync, a dry run showing its diff, applying
exactly the diff that was reviewed, held-back mass departures with their override, and the HR file drops.

Applying sends the digest of the dry run on screen; the service re-reads the source and refuses (nothing
applied) when its changes are no longer the reviewed ones — the same rule as `vigatra roster sync`, where the
first apply must follow a dry run showing the same changes, made stricter: every apply from this page must.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

from appliance.auth.directory import DirectoryUnavailable
from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import requires
from appliance.boundary.validation import accepts
from appliance.errors import Invalid, KeyProviderError
from appliance.services.roster import overview
from appliance.services.roster.sync import sync_source
from appliance.web import forms, web_blueprint


def _page(status: int = 200, **context: Any) -> ResponseReturnValue:
    app = appliance()
    return render_template("roster.html", sources=overview.sources(db(), app), drops=overview.drops(app),
                           max_departures=app.settings.roster.max_departures_percent, **context), status


def _label() -> str:
    return f"user:{state().actor.label}"[:200]


@web_blueprint.route("/admin/roster")
@requires("employees:write", action="roster.view")
@accepts(media=("text/html",))
def roster_page() -> ResponseReturnValue:
    return _page()


@web_blueprint.route("/admin/roster/dry-run", methods=["POST"])
@requires("employees:write", action="roster.dry_run")
@accepts(form=forms.RosterRunForm, media=("text/html",))
def roster_dry_run(form: forms.RosterRunForm) -> ResponseReturnValue:
    try:
        report, read = sync_source(appliance(), form.source, dry_run=True, actor_label=_label(), via="web")
    except (Invalid, DirectoryUnavailable, KeyProviderError) as exc:
        audit_detail(source=form.source, outcome="refused")
        return _page(400 if isinstance(exc, Invalid) else 503, error=exc.message)
    audit_resource("roster", form.source)
    audit_detail(source=form.source, summary=report.summary(), digest=report.digest())
    return _page(report=report, read=read, digest=report.digest())


@web_blueprint.route("/admin/roster/apply", methods=["POST"])
@requires("employees:write", action="roster.apply")
@accepts(form=forms.RosterApplyForm, media=("text/html",))
def roster_apply(form: forms.RosterApplyForm) -> ResponseReturnValue:
    allow = form.allow_mass_departures == "1"
    try:
        report, read = sync_source(appliance(), form.source, dry_run=False, allow_mass_departures=allow,
                                   actor_label=_label(), via="web", reviewed=form.digest)
    except (Invalid, DirectoryUnavailable, KeyProviderError) as exc:
        audit_detail(source=form.source, outcome="refused", reason=exc.message[:300])
        return _page(409 if isinstance(exc, Invalid) else 503, error=exc.message, held_source=form.source)
    audit_resource("roster", form.source)
    audit_detail(source=form.source, summary=report.summary(), allow_mass_departures=allow)
    flash(f"{form.source}: {read}; {report.summary()}", "ok")
    return redirect(url_for("web.roster_page"))
