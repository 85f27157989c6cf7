"""Employees: the list with red badges, details (connections, coverage, holdings under scope),
onboarding links, CSV import, offboarding, "sync now"."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from flask import flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import requires
from appliance.boundary.validation import accepts
from appliance.errors import Invalid, VigatraError
from appliance.services import alerts as alert_service
from appliance.services import connections as connection_service
from appliance.services import employees as employee_service
from appliance.services import notifications, onboarding, records, statements, sync
from appliance.services.rules import groups
from appliance.services.scope import employee_visible, flagging_alerts, holdings_visible
from appliance.services.valuation import read as valuation
from appliance.web import forms, web_blueprint


@web_blueprint.app_template_filter("money")
def money(value: Decimal | None, currency: str) -> str:
    """A value rounded to the currency's minor unit, with thousands separators (values.html)."""
    shown = valuation.rounded(value, currency)
    return "" if shown is None else f"{shown:,}"


@web_blueprint.route("/employees")
@requires("employees:read", action="employees.list")
@accepts(media=("text/html",))
def employees() -> ResponseReturnValue:
    rows = employee_service.list_rows(db())
    return render_template("employees.html", rows=rows, red_count=sum(1 for r in rows if r.red))


@web_blueprint.route("/employees", methods=["POST"])
@requires("employees:write", action="employees.create")
@accepts(form=forms.EmployeeForm, media=("text/html",))
def employees_create(form: forms.EmployeeForm) -> ResponseReturnValue:
    employee = employee_service.create(db(), name=form.name, email=form.email, department=form.department,
                                       external_id=form.external_id or None)
    audit_resource("employees", employee.id)
    flash(f"{employee.name} added.", "ok")
    return redirect(url_for("web.employee", employee_id=employee.id))


@web_blueprint.route("/employees/import", methods=["POST"])
@requires("employees:write", action="employees.import")
@accepts(form=forms.ImportForm, media=("text/html",))
def employees_import(form: forms.ImportForm) -> ResponseReturnValue:
    upload = form.file
    if upload is None or not upload.filename:
        raise Invalid("choose a CSV file", field="file")
    created = employee_service.import_csv(db(), upload.read())
    audit_detail(imported=len(created))
    flash(f"{len(created)} employee(s) imported.", "ok")
    return redirect(url_for("web.employees"))


def render_employee(employee_id: int, *, flag_form: Any = None, flag_error: VigatraError | None = None,
                    status: int = 200) -> ResponseReturnValue:
    """The employee page. It says why the reader sees the employee's financial records when their
    role limits them to flagged employees (the alerts that flag them, and until when)."""
    session = db()
    actor = state().actor
    person = employee_service.get(session, employee_id)
    conns = connection_service.list_for_employee(session, employee_id) if actor.can("connections:read") else []
    holdings = holdings_visible(session, actor, employee_id)
    views = [connection_service.connection_json(session, c, holdings=holdings) for c in conns]
    balances = transactions = positions = None
    if actor.can("balances:read:flagged") and employee_visible(session, actor, "balances:read", employee_id):
        balances = records.current_balances(session, actor, employee_id=employee_id)
    if actor.can("transactions:read:flagged") and employee_visible(session, actor, "transactions:read",
                                                                  employee_id):
        transactions = records.transactions(session, actor, employee_id=employee_id, limit=100)
    if actor.can("predictions:read:flagged") and employee_visible(session, actor, "predictions:read", employee_id):
        positions = records.current_positions(session, actor, employee_id=employee_id)
    alerts = alert_service.list_alerts(session, employee_id=employee_id, limit=20) if actor.can("alerts:read") \
        else []
    flagged_scope = any(actor.scope_for(p) == "flagged" for p in
                        ("balances:read", "transactions:read", "predictions:read"))
    flagging = flagging_alerts(session, employee_id) if flagged_scope else []
    links = onboarding.list_links(session, employee_id) if actor.can("onboarding:write") else []
    memberships = []
    if actor.can("groups:read"):
        member_of = groups.groups_of(session, [employee_id]).get(employee_id, frozenset())
        memberships = [g for g, _n in groups.list_groups(session) if g.id in member_of]
    return render_template("employee.html", person=person, connections=views, balances=balances,
                           transactions=transactions, positions=positions, alerts=alerts,
                           names=alert_service.names_for(session, alerts + flagging), flagging=flagging,
                           flagged_scope=flagged_scope, memberships=memberships,
                           links=[(link, onboarding.link_state(link)) for link in links],
                           mail_enabled=appliance().mailer.enabled, flag_form=flag_form or {},
                           flag_error=flag_error,
                           values=_values(session, balances, transactions, positions)), status


@web_blueprint.route("/employees/<int:employee_id>")
@requires("employees:read", action="employees.view")
@accepts(media=("text/html",))
def employee(employee_id: int) -> ResponseReturnValue:
    return render_employee(employee_id)


def _values(session: Any, balances: list[Any] | None, transactions: list[Any] | None,
            positions: list[Any] | None) -> dict[str, Any]:
    """Per-row values and totals in the firm's currency for the rows the page shows (absent: not shown)."""
    settings = appliance().settings
    out: dict[str, Any] = {"currency": valuation.currency_of(settings)}
    if balances is not None:
        out["balances"] = valuation.balance_values(session, settings, [b for b, _c in balances])
        out["balances_total"] = valuation.total(out["balances"])
    if positions is not None:
        out["positions"] = valuation.position_values(session, settings, positions)
        out["positions_total"] = valuation.total(out["positions"])
    if transactions is not None:
        by_id = valuation.transaction_values(session, settings, [t for t, _c in transactions])
        out["transactions"] = [by_id[t.id] for t, _c in transactions]
    return out


@web_blueprint.route("/employees/<int:employee_id>/offboard", methods=["POST"])
@requires("employees:write", action="employees.offboard")
@accepts(form=forms.NoFields, media=("text/html",))
def employee_offboard(employee_id: int) -> ResponseReturnValue:
    person = employee_service.offboard(db(), employee_id)
    flash(f"{person.name} offboarded: polling stopped, records kept.", "ok")
    return redirect(url_for("web.employee", employee_id=employee_id))


@web_blueprint.route("/employees/<int:employee_id>/links", methods=["POST"])
@requires("onboarding:write", action="onboarding.link_create")
@accepts(form=forms.LinkForm, media=("text/html",))
def employee_link(employee_id: int, form: forms.LinkForm) -> ResponseReturnValue:
    app = appliance()
    session = db()
    purpose = form.purpose
    row, token = onboarding.create_link(session, state().actor, app.settings, employee_id, purpose=purpose)
    url = onboarding.link_url(app.settings, token)
    audit_resource("onboarding", row.id)
    audit_detail(employee_id=employee_id, purpose=purpose, expires_at=row.expires_at.isoformat())
    if form.deliver == "email":
        person = employee_service.get(session, employee_id)
        notifications.onboarding_link(session, app.mailer, app.settings, to=person.email, name=person.name, url=url,
                                      expires_at=row.expires_at, purpose=purpose)
        audit_detail(emailed=True)
        if state().actor.can("employees:read"):
            flash(f"Onboarding link e-mailed to {person.name} ({person.email}); it leaves once this is saved.", "ok")
            return redirect(url_for("web.employee", employee_id=employee_id))
        # onboarding:write alone shows no employee detail (not even where the mail went).
        return render_template("onboarding_link.html", link=None, expires_at=row.expires_at, purpose=purpose,
                               employee_id=employee_id)
    # The link and nothing else: creating one needs onboarding:write only, which shows no employee detail.
    return render_template("onboarding_link.html", link=url, expires_at=row.expires_at, purpose=purpose,
                           employee_id=employee_id)


@web_blueprint.route("/employees/<int:employee_id>/links/<int:link_id>/revoke", methods=["POST"])
@requires("onboarding:write", action="onboarding.link_revoke", resource_arg="link_id")
@accepts(form=forms.NoFields, media=("text/html",))
def employee_link_revoke(employee_id: int, link_id: int) -> ResponseReturnValue:
    onboarding.revoke_link(db(), link_id)
    flash("Link revoked.", "ok")
    return redirect(url_for("web.employee", employee_id=employee_id))


@web_blueprint.route("/connections/<int:connection_id>/statements", methods=["POST"])
@requires("connections:write", action="statements.import", resource_arg="connection_id")
@accepts(form=forms.StatementForm, media=("text/html",))
def connection_statement(connection_id: int, form: forms.StatementForm) -> ResponseReturnValue:
    """A statement export (CSV) uploaded for one exchange connection; larger files: ``vigatra import statement``."""
    upload = form.file
    if upload is None or not upload.filename:
        raise Invalid("choose the statement file (CSV) exported from the venue", field="file")
    result = statements.import_statement(
        db(), connection_id, upload.read(), file_name=upload.filename, imported_by=state().actor.label,
        covered_from=_day_bound(form.covered_from, end=False), covered_to=_day_bound(form.covered_to, end=True))
    row = result.statement_import
    audit_resource("connections", connection_id)
    audit_detail(statement_import=row.id, format=row.format, added=result.added, duplicates=result.duplicates,
                 gaps_closed=result.gaps_closed)
    flash(" ".join(result.lines()), "ok")
    return redirect(url_for("web.employee", employee_id=result.employee_id))


def _day_bound(day: dt.date | None, *, end: bool) -> dt.datetime | None:
    """The start or the end (to the second) of a UTC day."""
    if day is None:
        return None
    moment = dt.datetime.combine(day, dt.time.max if end else dt.time.min, dt.UTC)
    return moment.replace(microsecond=0) if end else moment


@web_blueprint.route("/connections/<int:connection_id>/sync", methods=["POST"])
@requires("connections:write", action="connections.sync_now")
@accepts(form=forms.NoFields, media=("text/html",))
def connection_sync(connection_id: int) -> ResponseReturnValue:
    connection = sync.request_sync(db(), connection_id)
    flash("The connection will be polled at the next tick.", "ok")
    return redirect(url_for("web.employee", employee_id=connection.employee_id))
