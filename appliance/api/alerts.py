"""Alerts and cases: the compliance queue, manual alerts, assignment, notes, evidence, status."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.typing import ResponseReturnValue

from appliance.api import api_blueprint
from appliance.api.common import body, fields, int_arg, json_value, respond
from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import requires
from appliance.errors import Invalid
from appliance.services import alerts as alert_service
from appliance.services import notifications
from appliance.services.scope import employee_visible
from appliance.store.models import Alert

# Detail fields that are an employee's financial figures: shown only to callers who may see that
# employee's transactions (the alert flags the employee, so a flagged-scope reader normally may).
FIGURES = ("value", "value_source")


def _detail_for_caller(alert: Alert) -> dict[str, Any]:
    detail = dict(alert.detail or {})
    if alert.employee_id is None or not any(k in detail for k in FIGURES):
        return detail
    actor = state().actor
    if actor.scope_for("transactions:read") is None or not employee_visible(db(), actor, "transactions:read",
                                                                             alert.employee_id):
        for key in FIGURES:
            detail.pop(key, None)
    return detail


def alert_json(alert: Alert, names: dict[str, dict[int, str]] | None = None, *, full: bool = False
               ) -> dict[str, Any]:
    names = names or alert_service.names_for(db(), [alert])
    users, employees, rules = names["users"], names["employees"], names["rules"]
    out: dict[str, Any] = {
        "id": alert.id, "kind": alert.kind, "severity": alert.severity, "status": alert.status, "title": alert.title,
        "employee_id": alert.employee_id, "employee_name": employees.get(alert.employee_id or 0),
        "connection_id": alert.connection_id, "detail": _detail_for_caller(alert),
        "rule_id": alert.rule_id, "rule_name": rules.get(alert.rule_id or 0), "rule_version": alert.rule_version,
        "list_entry_id": alert.list_entry_id, "record_key": alert.record_key,
        "occurred_at": json_value(alert.occurred_at),
        "assigned_to": alert.assigned_to, "assigned_to_name": users.get(alert.assigned_to or 0),
        "created_at": json_value(alert.created_at), "created_by": alert.created_by,
        "created_by_name": users.get(alert.created_by or 0), "reason": alert.reason,
        "updated_at": json_value(alert.updated_at), "resolved_at": json_value(alert.resolved_at),
        "resolved_by_name": users.get(alert.resolved_by or 0), "resolution": alert.resolution,
        "flagged_until": json_value(alert.flagged_until),
    }
    if full:
        session = db()
        out["notes"] = [{"id": n.id, "text": n.text, "author": n.author_label, "author_id": n.author_id,
                         "created_at": json_value(n.created_at)} for n in alert_service.notes(session, alert.id)]
        out["history"] = [{"at": json_value(e.at), "action": e.action, "actor": e.actor_label, "actor_id": e.actor_id,
                           "detail": e.detail} for e in alert_service.history(session, alert.id)]
        out["evidence"] = [{"id": e.id, "type": e.type, "ref_id": e.ref_id, "reference": e.reference, "note": e.note,
                            "added_by": e.added_label, "added_at": json_value(e.added_at)}
                           for e in alert_service.evidence(session, alert.id)]
    return out


@api_blueprint.route("/alerts", methods=["GET"])
@requires("alerts:read", action="alerts.list")
def list_alerts() -> ResponseReturnValue:
    items = alert_service.list_alerts(db(), status=request.args.get("status") or None,
                                      employee_id=int_arg("employee_id"), kind=request.args.get("kind") or None,
                                      rule_id=int_arg("rule_id"), assigned_to=int_arg("assigned_to"),
                                      limit=int_arg("limit", 200, high=1000) or 200, before_id=int_arg("before"))
    names = alert_service.names_for(db(), items)
    return respond({"alerts": [alert_json(a, names) for a in items], "next_before": items[-1].id if items else None})


@api_blueprint.route("/alerts", methods=["POST"])
@requires("alerts:write", action="alerts.create")
def create_alert() -> ResponseReturnValue:
    """A manual alert on an employee (how compliance flags someone): the reason is required."""
    data = body()
    fields(data, {"employee_id", "title", "reason", "severity"})
    alert = alert_service.raise_manual(db(), state().actor, employee_id=data.get("employee_id"),
                                       title=data.get("title"), reason=data.get("reason"),
                                       severity=data.get("severity", "warning"))
    notifications.alerts_raised(db(), appliance().mailer, appliance().settings, [alert.id])
    audit_resource("alerts", alert.id)
    audit_detail(employee_id=alert.employee_id, severity=alert.severity)
    return respond(alert_json(alert, full=True), 201)


@api_blueprint.route("/alerts/<int:alert_id>", methods=["GET"])
@requires("alerts:read", action="alerts.view")
def get_alert(alert_id: int) -> ResponseReturnValue:
    return respond(alert_json(alert_service.get(db(), alert_id), full=True))


@api_blueprint.route("/alerts/<int:alert_id>/assign", methods=["POST"])
@requires("alerts:triage", action="alerts.assign")
def assign_alert(alert_id: int) -> ResponseReturnValue:
    data = body()
    fields(data, {"user_id"})
    if "user_id" not in data:
        raise Invalid("user_id is required (null to unassign)", field="user_id")
    session = db()
    before = alert_service.get(session, alert_id).assigned_to
    alert = alert_service.assign(session, state().actor, alert_id, data["user_id"])
    if alert.assigned_to is not None and alert.assigned_to != before:
        notifications.assigned(session, appliance().mailer, appliance().settings, alert, state().actor.label)
    audit_detail(assigned_to=alert.assigned_to)
    return respond(alert_json(alert, full=True))


@api_blueprint.route("/alerts/<int:alert_id>/notes", methods=["POST"])
@requires("alerts:triage", action="alerts.note")
def add_note(alert_id: int) -> ResponseReturnValue:
    data = body()
    fields(data, {"text"}, ("text",))
    note = alert_service.add_note(db(), state().actor, alert_id, data.get("text"))
    audit_detail(note_id=note.id)
    return respond(alert_json(alert_service.get(db(), alert_id), full=True), 201)


@api_blueprint.route("/alerts/<int:alert_id>/evidence", methods=["POST"])
@requires("alerts:triage", action="alerts.evidence")
def add_evidence(alert_id: int) -> ResponseReturnValue:
    data = body()
    fields(data, {"type", "id", "reference", "note"}, ("type",))
    item = alert_service.add_evidence(db(), state().actor, alert_id, type=data.get("type"), ref_id=data.get("id"),
                                      reference=data.get("reference", ""), note=data.get("note", ""))
    audit_detail(evidence_id=item.id, type=item.type)
    return respond(alert_json(alert_service.get(db(), alert_id), full=True), 201)


@api_blueprint.route("/alerts/<int:alert_id>/status", methods=["POST"])
@requires("alerts:triage", action="alerts.status")
def set_status(alert_id: int) -> ResponseReturnValue:
    """open -> investigating -> resolved | dismissed (reason required); back to open reopens (reason required)."""
    data = body()
    fields(data, {"status", "reason"}, ("status",))
    alert = alert_service.set_status(db(), state().actor, alert_id, data.get("status"), data.get("reason", ""),
                                     flag_window_days=appliance().settings.alerts.flag_window_days)
    audit_detail(status=alert.status)
    return respond(alert_json(alert, full=True))


@api_blueprint.route("/alerts/<int:alert_id>/triage", methods=["POST"])
@requires("alerts:triage", action="alerts.triage")
def triage_alert(alert_id: int) -> ResponseReturnValue:
    """The first version's one-step triage (``assigned``: take it; ``resolved`` / ``dismissed`` with a
    resolution), kept for integrations written against it."""
    data = body()
    status, resolution = data.get("status"), data.get("resolution", "")
    if not isinstance(status, str) or not isinstance(resolution, str):
        raise Invalid("status and resolution must be strings")
    alert = alert_service.triage(db(), state().actor, alert_id, status=status, resolution=resolution,
                                 flag_window_days=appliance().settings.alerts.flag_window_days)
    audit_detail(status=status)
    return respond(alert_json(alert))
