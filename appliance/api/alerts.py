"""Alerts: the compliance queue."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.typing import ResponseReturnValue

from appliance.api import api_blueprint
from appliance.api.common import body, int_arg, json_value, respond
from appliance.boundary.edge import audit_detail, db, state
from appliance.boundary.routes import requires
from appliance.errors import Invalid
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
def list_alerts() -> ResponseReturnValue:
    items = alert_service.list_alerts(db(), status=request.args.get("status") or None,
                                      employee_id=int_arg("employee_id"), limit=int_arg("limit", 200, high=1000) or 200,
                                      before_id=int_arg("before"))
    details = alert_service.visible_details(db(), state().actor, items)
    return respond({"alerts": [alert_json(a, details[a.id]) for a in items],
                    "next_before": items[-1].id if items else None})


@api_blueprint.route("/alerts/<int:alert_id>", methods=["GET"])
@requires("alerts:read", action="alerts.view")
def get_alert(alert_id: int) -> ResponseReturnValue:
    return respond(_one(alert_service.get(db(), alert_id)))


def _one(alert: Alert) -> dict[str, Any]:
    return alert_json(alert, alert_service.visible_details(db(), state().actor, [alert])[alert.id])


@api_blueprint.route("/alerts/<int:alert_id>/triage", methods=["POST"])
@requires("alerts:triage", action="alerts.triage")
def triage_alert(alert_id: int) -> ResponseReturnValue:
    data = body()
    status, resolution = data.get("status"), data.get("resolution", "")
    if not isinstance(status, str) or not isinstance(resolution, str):
        raise Invalid("status and resolution must be strings")
    alert = alert_service.triage(db(), state().actor, alert_id, status=status, resolution=resolution)
    audit_detail(status=status)
    return respond(_one(alert))
