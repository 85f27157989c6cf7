"""The alert queue and cases: raise an alert by hand, assign by name, notes, evidence, status with
reasons, reopen, the history. A refused form is shown again with what was typed and what is missing."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import requires
from appliance.boundary.validation import accepts
from appliance.errors import Invalid, NotFound, VigatraError
from appliance.services import alerts as alert_service
from appliance.services import notifications
from appliance.services.scope import holdings_visible
from appliance.store.models import Employee, ListEntry
from appliance.web import forms, web_blueprint

STATUS_TABS = ("open", "investigating", "resolved", "dismissed", "all")


def _employees() -> list[tuple[int, str]]:
    return list(db().execute(select(Employee.id, Employee.name).where(Employee.status == "active").order_by(
        Employee.name)))


@web_blueprint.route("/alerts")
@requires("alerts:read", action="alerts.list")
@accepts(query=forms.AlertsQuery, media=("text/html",))
def alerts(query: forms.AlertsQuery) -> ResponseReturnValue:
    status = "investigating" if query.status == "assigned" else query.status  # the old name, in bookmarks
    session = db()
    items = alert_service.list_alerts(session, status=None if status == "all" else status, limit=200,
                                      before_id=query.before, assigned_to=query.assigned_to)
    actor = state().actor
    return render_template("alerts.html", alerts=items, status=status, tabs=STATUS_TABS,
                           names=alert_service.names_for(session, items),
                           employees=_employees() if actor.can("alerts:write") else [], form={}, error=None)


@web_blueprint.route("/alerts", methods=["POST"])
@requires("alerts:write", action="alerts.create")
@accepts(form=forms.CaseCreateForm, media=("text/html",))
def alerts_create(form: forms.CaseCreateForm) -> ResponseReturnValue:
    session = db()
    try:
        if form.employee_id is None:
            raise Invalid("choose the employee the alert is about", field="employee_id")
        alert = alert_service.raise_manual(session, state().actor, employee_id=form.employee_id, title=form.title,
                                           reason=form.reason, severity=form.severity or "warning")
    except Invalid as exc:
        if form.back is not None:
            return _employee_with_error(form.back, exc)
        return render_template("alerts.html", alerts=[], status="open", tabs=STATUS_TABS,
                               names=alert_service.names_for(session, []), employees=_employees(),
                               form=request.form, error=exc), 400
    notifications.alerts_raised(session, appliance().mailer, appliance().settings, [alert.id])
    audit_resource("alerts", alert.id)
    audit_detail(employee_id=alert.employee_id, severity=alert.severity)
    flash("Alert raised: the employee is now flagged.", "ok")
    return redirect(url_for("web.alert", alert_id=alert.id))


def _employee_with_error(employee_id: int, exc: Invalid) -> ResponseReturnValue:
    from appliance.web.employees import render_employee

    return render_employee(employee_id, flag_form=request.form, flag_error=exc, status=400)


def _record_links(detail: dict[str, Any], employee: int | None) -> list[dict[str, Any]]:
    """The evidence records with a link the reader may follow (scope is checked again there)."""
    out = []
    for record in detail.get("records") or []:
        item = dict(record)
        employee_id = item.get("employee_id") or employee
        if employee_id and item.get("id"):
            item["url"] = url_for("web.employee_record", employee_id=employee_id, kind=item.get("type", ""),
                                  record_id=item["id"])
        out.append(item)
    return out


def render_case(alert_id: int, *, form: Any = None, error: VigatraError | None = None, which: str = "",
                status: int = 200) -> ResponseReturnValue:
    session = db()
    actor = state().actor
    alert = alert_service.get(session, alert_id)
    names = alert_service.names_for(session, [alert])
    # What the employee holds and trades (records, list entries, figures, addresses) only within the
    # reader's balances scope; outside it the detail keeps its keys without their values.
    holdings = holdings_visible(session, actor, alert.employee_id)
    detail = alert_service.visible_details(session, actor, [alert])[alert.id]
    entries = []
    for entry in (detail.get("entries") or []) if holdings else []:
        row = session.get(ListEntry, entry.get("id")) if isinstance(entry.get("id"), int) else None
        entries.append({**entry, "list_id": row.list_id if row is not None else None})
    other = {k: v for k, v in detail.items() if k not in CASE_DETAIL}
    return render_template(
        "alert.html", alert=alert, names=names, detail=detail, holdings=holdings, other_detail=other,
        records=_record_links(detail, alert.employee_id) if holdings else [], entries=entries,
        notes=alert_service.notes(session, alert.id), history=alert_service.history(session, alert.id),
        evidence=alert_service.evidence(session, alert.id),
        triagers=alert_service.triagers(session) if actor.can("alerts:triage") else [],
        form=form or {}, error=error, which=which), status


# The detail keys of a rule's alert the case page shows in its own words (the rest shows as a table).
CASE_DETAIL = frozenset({"rule", "list", "entries", "records", "value", "currency", "threshold", "value_source",
                         "address", "direction"})


@web_blueprint.route("/alerts/<int:alert_id>")
@requires("alerts:read", action="alerts.view")
@accepts(media=("text/html",))
def alert(alert_id: int) -> ResponseReturnValue:
    return render_case(alert_id)


def _case_action(alert_id: int, which: str, action: Any, done: str) -> ResponseReturnValue:
    try:
        action()
    except Invalid as exc:
        return render_case(alert_id, form=request.form, error=exc, which=which, status=400)
    flash(done, "ok")
    return redirect(url_for("web.alert", alert_id=alert_id))


@web_blueprint.route("/alerts/<int:alert_id>/assign", methods=["POST"])
@requires("alerts:triage", action="alerts.assign")
@accepts(form=forms.AssignForm, media=("text/html",))
def alert_assign(alert_id: int, form: forms.AssignForm) -> ResponseReturnValue:
    session = db()

    def act() -> None:
        before = alert_service.get(session, alert_id).assigned_to
        alert = alert_service.assign(session, state().actor, alert_id, form.user_id)
        if alert.assigned_to is not None and alert.assigned_to != before:
            notifications.assigned(session, appliance().mailer, appliance().settings, alert, state().actor.label)
        audit_detail(assigned_to=alert.assigned_to)

    return _case_action(alert_id, "assign", act, "Assignment saved.")


@web_blueprint.route("/alerts/<int:alert_id>/notes", methods=["POST"])
@requires("alerts:triage", action="alerts.note")
@accepts(form=forms.NoteForm, media=("text/html",))
def alert_note(alert_id: int, form: forms.NoteForm) -> ResponseReturnValue:
    def act() -> None:
        note = alert_service.add_note(db(), state().actor, alert_id, form.text)
        audit_detail(note_id=note.id)

    return _case_action(alert_id, "note", act, "Note added.")


@web_blueprint.route("/alerts/<int:alert_id>/status", methods=["POST"])
@requires("alerts:triage", action="alerts.status")
@accepts(form=forms.CaseStatusForm, media=("text/html",))
def alert_status(alert_id: int, form: forms.CaseStatusForm) -> ResponseReturnValue:
    def act() -> None:
        alert = alert_service.set_status(db(), state().actor, alert_id, form.status, form.reason,
                                         flag_window_days=appliance().settings.alerts.flag_window_days)
        audit_detail(status=alert.status)

    return _case_action(alert_id, "status", act, "Status changed.")


@web_blueprint.route("/alerts/<int:alert_id>/evidence", methods=["POST"])
@requires("alerts:triage", action="alerts.evidence")
@accepts(form=forms.EvidenceForm, media=("text/html",))
def alert_evidence(alert_id: int, form: forms.EvidenceForm) -> ResponseReturnValue:
    def act() -> None:
        kind = form.type
        raw = form.ref_id.strip()
        number = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None
        if kind != "reference" and number is None:
            raise Invalid("give the record's number", field="id")
        item = alert_service.add_evidence(db(), state().actor, alert_id, type=kind, ref_id=number,
                                          reference=form.reference, note=form.note)
        audit_detail(evidence_id=item.id, type=item.type)

    return _case_action(alert_id, "evidence", act, "Evidence linked.")


@web_blueprint.route("/alerts/<int:alert_id>/triage", methods=["POST"])
@requires("alerts:triage", action="alerts.triage")
@accepts(form=forms.TriageForm, media=("text/html",))
def alert_triage(alert_id: int, form: forms.TriageForm) -> ResponseReturnValue:
    """The first version's one-step form (take it / resolve / dismiss), kept for bookmarked pages."""
    status = form.status

    def act() -> None:
        alert_service.triage(db(), state().actor, alert_id, status=status, resolution=form.resolution,
                             flag_window_days=appliance().settings.alerts.flag_window_days)
        audit_detail(status=status)

    return _case_action(alert_id, "status", act, "Alert updated.")


@web_blueprint.route("/employees/<int:employee_id>/records/<kind>/<int:record_id>")
@requires("employees:read", action="records.view", resource_arg="record_id")
@accepts(media=("text/html",))
def employee_record(employee_id: int, kind: str, record_id: int) -> ResponseReturnValue:
    """One transaction, position or balance observation: where an alert's evidence links to. Shown
    under the reader's scope for that kind of record (not visible reads as not found)."""
    from appliance.services import records

    permission = {"transaction": "transactions:read", "position": "predictions:read",
                  "balance": "balances:read"}.get(kind)
    actor = state().actor
    if permission is None or actor.scope_for(permission) is None:
        raise NotFound("not found")
    session = db()
    found = records.one_record(session, actor, kind, employee_id, record_id)
    audit_resource(permission.split(":")[0], record_id)
    person = session.get(Employee, employee_id)
    return render_template("record.html", kind=kind, record=found[0], connection=found[1], person=person)
