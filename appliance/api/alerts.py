"""Alerts: the compliance queue."""

from __future__ import annotations

from typing import Any

from flask.typing import ResponseReturnValue

from appliance.api import api_blueprint
from appliance.api import schemas as s
from appliance.api.common import json_value, respond
from appliance.boundary.edge import audit_detail, db, state
from appliance.boundary.routes import requires
from appliance.boundary.validation import accepts
from appliance.services import alerts as alert_service
from appliance.store.models import Alert


def alert_json(alert: Alert, detail: dict[str, Any]) -> dict[str, Any]:
    """``detail``: as the caller may see it (alert_service.visible_details)."""
    return {
        "id": alert.id, "kind": alert.kind, "severity": alert.severity, "status": alert.status, "title": alert.title,
        "employee_id": alert.employee_id, "connection_id": alert.connection_id, "detail": detail,
        "assigned_to": alert.assigned_to, "created_at": json_value(alert.created_at),
        "resolved_at": json_value(alert.resolved_at), "resolution": alert.resolution,
    }


@api_blueprint.route("/alerts", methods=["GET"])
@requires("alerts:read", action="alerts.list")
@accepts(query=s.AlertQuery, returns=s.AlertList)
def list_alerts(query: s.AlertQuery) -> ResponseReturnValue:
    """The alert queue, newest first."""
    session = db()
    items = alert_service.list_alerts(session, status=query.status, employee_id=query.employee_id, limit=query.limit,
                                      before_id=query.before)
    details = alert_service.visible_details(session, state().actor, items)
    return respond({"alerts": [alert_json(a, details[a.id]) for a in items],
                    "next_before": items[-1].id if items else None})


@api_blueprint.route("/alerts/<int:alert_id>", methods=["GET"])
@requires("alerts:read", action="alerts.view")
@accepts(returns=s.AlertOut)
def get_alert(alert_id: int) -> ResponseReturnValue:
    """One alert."""
    return respond(_one(alert_service.get(db(), alert_id)))


def _one(alert: Alert) -> dict[str, Any]:
    return alert_json(alert, alert_service.visible_details(db(), state().actor, [alert])[alert.id])


@api_blueprint.route("/alerts/<int:alert_id>/triage", methods=["POST"])
@requires("alerts:triage", action="alerts.triage")
@accepts(body=s.AlertTriage, returns=s.AlertOut)
def triage_alert(alert_id: int, body: s.AlertTriage) -> ResponseReturnValue:
    """Assign, resolve or dismiss an alert."""
    status, resolution = body.status, body.resolution
    alert = alert_service.triage(db(), state().actor, alert_id, status=status, resolution=resolution)
    audit_detail(status=status)
    return respond(_one(alert))
