"""Alerts and cases: the compliance queue, manual alerts, assignment, notes, evidence, status."""

from __future__ import annotations

from typing import Any

from flask.typing import ResponseReturnValue

from appliance.api import api_blueprint
from appliance.api import conduct_schemas as c
from appliance.api import schemas as s
from appliance.api.common import json_value, respond
from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import requires
from appliance.boundary.validation import accepts
from appliance.services import alerts as alert_service
from appliance.services import notifications
from appliance.store.models import Alert


def alert_json(alert: Alert, detail: dict[str, Any], names: dict[str, dict[int, str]] | None = None, *,
               full: bool = False) -> dict[str, Any]:
    """``detail``: as the caller may see it (alert_service.visible_details)."""
    names = names or alert_service.names_for(db(), [alert])
    users, employees, rules = names["users"], names["employees"], names["rules"]
    out: dict[str, Any] = {
        "id": alert.id, "kind": alert.kind, "severity": alert.severity, "status": alert.status, "title": alert.title,
        "employee_id": alert.employee_id, "employee_name": employees.get(alert.employee_id or 0),
        "connection_id": alert.connection_id, "detail": detail,
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


def _one(alert: Alert, *, full: bool = True) -> dict[str, Any]:
    return alert_json(alert, alert_service.visible_details(db(), state().actor, [alert])[alert.id], full=full)


@api_blueprint.route("/alerts", methods=["GET"])
@requires("alerts:read", action="alerts.list")
@accepts(query=c.AlertCaseQuery, returns=c.CaseList)
def list_alerts(query: c.AlertCaseQuery) -> ResponseReturnValue:
    """The alert queue, newest first."""
    session = db()
    items = alert_service.list_alerts(session, status=query.status, employee_id=query.employee_id, kind=query.kind,
                                      rule_id=query.rule_id, assigned_to=query.assigned_to, limit=query.limit,
                                      before_id=query.before)
    names = alert_service.names_for(session, items)
    details = alert_service.visible_details(session, state().actor, items)
    return respond({"alerts": [alert_json(a, details[a.id], names) for a in items],
                    "next_before": items[-1].id if items else None})


@api_blueprint.route("/alerts", methods=["POST"])
@requires("alerts:write", action="alerts.create")
@accepts(body=c.AlertCreate, returns=c.CaseDetail, status=201)
def create_alert(body: c.AlertCreate) -> ResponseReturnValue:
    """Raise an alert by hand on an employee (how compliance flags someone); the reason is required."""
    alert = alert_service.raise_manual(db(), state().actor, employee_id=body.employee_id, title=body.title,
                                       reason=body.reason, severity=body.severity)
    notifications.alerts_raised(db(), appliance().mailer, appliance().settings, [alert.id])
    audit_resource("alerts", alert.id)
    audit_detail(employee_id=alert.employee_id, severity=alert.severity)
    return respond(_one(alert), 201)


@api_blueprint.route("/alerts/<int:alert_id>", methods=["GET"])
@requires("alerts:read", action="alerts.view")
@accepts(returns=c.CaseDetail)
def get_alert(alert_id: int) -> ResponseReturnValue:
    """One alert with its case: notes, history, evidence."""
    return respond(_one(alert_service.get(db(), alert_id)))


@api_blueprint.route("/alerts/<int:alert_id>/assign", methods=["POST"])
@requires("alerts:triage", action="alerts.assign")
@accepts(body=c.AlertAssign, returns=c.CaseDetail)
def assign_alert(alert_id: int, body: c.AlertAssign) -> ResponseReturnValue:
    """Assign the case to a user who may triage (null: unassign)."""
    session = db()
    before = alert_service.get(session, alert_id).assigned_to
    alert = alert_service.assign(session, state().actor, alert_id, body.user_id)
    if alert.assigned_to is not None and alert.assigned_to != before:
        notifications.assigned(session, appliance().mailer, appliance().settings, alert, state().actor.label)
    audit_detail(assigned_to=alert.assigned_to)
    return respond(_one(alert))


@api_blueprint.route("/alerts/<int:alert_id>/notes", methods=["POST"])
@requires("alerts:triage", action="alerts.note")
@accepts(body=c.AlertNoteCreate, returns=c.CaseDetail, status=201)
def add_note(alert_id: int, body: c.AlertNoteCreate) -> ResponseReturnValue:
    """Add a note to the case (notes are append-only)."""
    note = alert_service.add_note(db(), state().actor, alert_id, body.text)
    audit_detail(note_id=note.id)
    return respond(_one(alert_service.get(db(), alert_id)), 201)


@api_blueprint.route("/alerts/<int:alert_id>/evidence", methods=["POST"])
@requires("alerts:triage", action="alerts.evidence")
@accepts(body=c.AlertEvidenceCreate, returns=c.CaseDetail, status=201)
def add_evidence(alert_id: int, body: c.AlertEvidenceCreate) -> ResponseReturnValue:
    """Link a record of the alert's employee, another alert, or an outside reference."""
    item = alert_service.add_evidence(db(), state().actor, alert_id, type=body.type, ref_id=body.id,
                                      reference=body.reference, note=body.note)
    audit_detail(evidence_id=item.id, type=item.type)
    return respond(_one(alert_service.get(db(), alert_id)), 201)


@api_blueprint.route("/alerts/<int:alert_id>/status", methods=["POST"])
@requires("alerts:triage", action="alerts.status")
@accepts(body=c.AlertStatusChange, returns=c.CaseDetail)
def set_status(alert_id: int, body: c.AlertStatusChange) -> ResponseReturnValue:
    """open -> investigating -> resolved | dismissed (reason required); back to open reopens (reason required)."""
    alert = alert_service.set_status(db(), state().actor, alert_id, body.status, body.reason or "",
                                     flag_window_days=appliance().settings.alerts.flag_window_days)
    audit_detail(status=alert.status)
    return respond(_one(alert))


@api_blueprint.route("/alerts/<int:alert_id>/triage", methods=["POST"])
@requires("alerts:triage", action="alerts.triage")
@accepts(body=s.AlertTriage, returns=c.CaseOut)
def triage_alert(alert_id: int, body: s.AlertTriage) -> ResponseReturnValue:
    """The first version's one-step triage (assigned: take it; resolved / dismissed with a resolution), kept
    for integrations written against it."""
    status, resolution = body.status, body.resolution
    alert = alert_service.triage(db(), state().actor, alert_id, status=status, resolution=resolution,
                                 flag_window_days=appliance().settings.alerts.flag_window_days)
    audit_detail(status=status)
    return respond(_one(alert, full=False))
