"""The employee portal's compliance tasks: /me/tasks/<id> shows what the task covers (synced records for the
period, connected accounts), takes declared accounts and manual entries, and the certification with a typed
name; a code-of-ethics task shows the code and takes the acknowledgement.

An employee session only (``@employee_portal``); every query is filtered on the session's employee, so
another employee's task answers 404 like one that does not exist. The pipeline audits every request; each
change also names its task in the audit detail.
"""

from __future__ import annotations

from typing import Any

from flask import flash, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from appliance.boundary.authentication import EMPLOYEE_COOKIE
from appliance.boundary.csrf import employee_csrf_token
from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import employee_portal
from appliance.boundary.validation import accepts
from appliance.errors import Conflict, Invalid, NotFound
from appliance.services import me
from appliance.services.attestations import campaigns, certify, periods, snapshot
from appliance.store.models import CodeVersion
from appliance.web import attestation_forms as f
from appliance.web import web_blueprint
from appliance.web.attestations import code_response


def _employee_id() -> int:
    employee_id = state().actor.employee_id
    assert employee_id is not None
    return employee_id


def _back(task_id: int, anchor: str = "") -> ResponseReturnValue:
    return redirect(url_for("web.portal_task", task_id=task_id) + (f"#{anchor}" if anchor else ""))


@web_blueprint.route("/me/tasks/<int:task_id>", methods=["GET"])
@employee_portal(action="portal.task_view", resource_arg="task_id")
@accepts(media=("text/html",))
def portal_task(task_id: int) -> ResponseReturnValue:
    session = db()
    employee_id = _employee_id()
    task, campaign = certify.my_task(session, employee_id, task_id)
    content = snapshot.view(session, appliance(), task, campaign)
    version = session.get(CodeVersion, campaign.code_version_id) if campaign.code_version_id else None
    context: dict[str, Any] = {
        "task": task, "campaign": campaign, "content": content, "label": periods.LABELS[campaign.kind],
        "status": campaigns.status_of(task), "days_late": campaigns.days_late(task),
        "editable": task.status in campaigns.OUTSTANDING, "submissions": certify.submissions(session, task.id),
        "reviews": certify.reviews(session, task.id), "employee": me.profile(session, employee_id),
        "version": version, "natures": certify.NATURES,
        "code_text": version.content.decode("utf-8") if version is not None and version.media_type == "text/plain"
        else None,
        "portal_csrf": employee_csrf_token(request.cookies.get(EMPLOYEE_COOKIE, ""))}
    response = make_response(render_template("portal_task.html", **context))
    response.headers["Cache-Control"] = "no-store"
    return response


@web_blueprint.route("/me/tasks/<int:task_id>/declared", methods=["POST"])
@employee_portal(action="portal.task_declare", resource_arg="task_id")
@accepts(form=f.DeclaredForm, media=("text/html",))
def portal_task_declare(task_id: int, form: f.DeclaredForm) -> ResponseReturnValue:
    try:
        row = certify.declare_account(db(), _employee_id(), task_id, venue=form.venue, account=form.account,
                                      reason=form.reason)
    except (Invalid, Conflict) as exc:
        flash(f"Not added: {exc.message}", "error")
        return _back(task_id, "declared")
    audit_resource("attestation_task", task_id)
    audit_detail(declared_account_id=row.id)
    flash("Account declared.", "ok")
    return _back(task_id, "declared")


@web_blueprint.route("/me/tasks/<int:task_id>/manual", methods=["POST"])
@employee_portal(action="portal.task_manual", resource_arg="task_id")
@accepts(form=f.ManualForm, media=("text/html",))
def portal_task_manual(task_id: int, form: f.ManualForm) -> ResponseReturnValue:
    data = form.model_dump(exclude={"csrf_token"})
    try:
        row = certify.add_manual(db(), appliance().settings, _employee_id(), task_id, data)
    except (Invalid, Conflict) as exc:
        flash(f"Not added: {exc.message}", "error")
        return _back(task_id, "manual")
    audit_resource("attestation_task", task_id)
    audit_detail(manual_entry_id=row.id)
    flash("Manual entry added.", "ok")
    return _back(task_id, "manual")


@web_blueprint.route("/me/tasks/<int:task_id>/remove", methods=["POST"])
@employee_portal(action="portal.task_remove", resource_arg="task_id")
@accepts(form=f.RemoveForm, media=("text/html",))
def portal_task_remove(task_id: int, form: f.RemoveForm) -> ResponseReturnValue:
    try:
        certify.remove_draft(db(), _employee_id(), task_id, form.what, form.row_id)
    except Conflict as exc:
        flash(f"Not removed: {exc.message}", "error")
        return _back(task_id)
    audit_resource("attestation_task", task_id)
    audit_detail(removed=form.what, row_id=form.row_id)
    flash("Removed.", "ok")
    return _back(task_id, form.what)


@web_blueprint.route("/me/tasks/<int:task_id>/certify", methods=["POST"])
@employee_portal(action="portal.task_certify", resource_arg="task_id")
@accepts(form=f.CertifyForm, media=("text/html",))
def portal_task_certify(task_id: int, form: f.CertifyForm) -> ResponseReturnValue:
    try:
        row = certify.submit(db(), appliance(), _employee_id(), task_id, typed_name=form.typed_name,
                             nothing_to_report=form.nothing_to_report == "yes", confirm=form.confirm == "yes")
    except (Invalid, Conflict) as exc:
        flash(f"Not certified: {exc.message}", "error")
        return _back(task_id, "certify")
    audit_resource("attestation_task", task_id)
    audit_detail(submission_id=row.id, snapshot_sha256=row.snapshot_sha256, nothing_to_report=row.nothing_to_report)
    flash("Certified. Compliance has your report." if row.status == "submitted" else "Acknowledged.", "ok")
    return _back(task_id)


@web_blueprint.route("/me/code/<int:version_id>", methods=["GET"])
@employee_portal(action="portal.code_view", resource_arg="version_id")
@accepts(media=("application/pdf", "text/plain"))
def portal_code_file(version_id: int) -> ResponseReturnValue:
    """A code version the employee has a task for (else 404)."""
    session = db()
    employee_id = _employee_id()
    if not any(c.code_version_id == version_id for _t, c in certify.my_tasks(session, employee_id)):
        raise NotFound("not found")
    return code_response(campaigns.code_version(session, version_id))
