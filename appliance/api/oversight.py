"""Predictions, onboarding links, CSV import, "sync now", and the Prometheus endpoint."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.typing import ResponseReturnValue

from appliance.api import api_blueprint
from appliance.api import schemas as s
from appliance.api.common import json_value, respond
from appliance.api.values import value_json
from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import requires, signed_in
from appliance.boundary.validation import NoInput, accepts
from appliance.services import employees as employee_service
from appliance.services import metrics, onboarding, records, sync
from appliance.services.roster import sync as roster_sync
from appliance.services.valuation import read as valuation
from appliance.store.base import utcnow


def plain(value: Any) -> Any:
    """A panel's figures as JSON: Decimals as strings, times as UTC ISO text, containers walked."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return json_value(value)


@api_blueprint.route("/overview", methods=["GET"])
@signed_in(action="overview.view")
@accepts(returns=s.Overview)
def overview_json() -> ResponseReturnValue:
    """The overview's figures: the panels the caller may see, and the headline numbers."""
    from appliance.services import overview

    settings = appliance().settings
    built = overview.collect(db(), state().actor, settings)
    top = overview.headline(built)
    return respond({"alerts_open": top.get("alerts_open"), "connections_red": top.get("connections_red"),
                    "value_total": json_value(top.get("value_total")), "currency": valuation.currency_of(settings),
                    "generated_at": json_value(utcnow()), "panels": {b.panel.key: plain(b.data) for b in built}})


def position_json(p: Any, c: Any, value: valuation.Value) -> dict[str, Any]:
    """``current_value`` is the venue's own figure in the market's currency; ``value`` ours, in the firm's."""
    return {"connection_id": c.id, "employee_id": c.employee_id, "venue": c.venue, "market_id": p.market_id,
            "market_title": p.market_title, "category": p.category, "outcome": p.outcome,
            "size": json_value(p.size), "avg_price": json_value(p.avg_price),
            "current_value": json_value(p.current_value), "valid_from": json_value(p.valid_from),
            "observed_until": json_value(p.observed_until), **value_json(value)}


def positions_response(session: Any, rows: list[Any]) -> ResponseReturnValue:
    settings = appliance().settings
    values = valuation.position_values(session, settings, rows)
    return respond({"currency": valuation.currency_of(settings),
                    "positions": [position_json(p, c, v) for (p, c), v in zip(rows, values, strict=True)]})


@api_blueprint.route("/predictions", methods=["GET"])
@requires("predictions:read", action="predictions.list")
@accepts(returns=s.PositionList)
def list_predictions() -> ResponseReturnValue:
    """Current prediction-market positions, under the caller's scope."""
    session = db()
    return positions_response(session, records.current_positions(session, state().actor))


@api_blueprint.route("/employees/<int:employee_id>/predictions", methods=["GET"])
@requires("predictions:read", action="predictions.list_employee")
@accepts(returns=s.PositionList)
def employee_predictions(employee_id: int) -> ResponseReturnValue:
    """An employee's prediction-market positions."""
    session = db()
    employee_service.get(session, employee_id)
    return positions_response(session, records.current_positions(session, state().actor, employee_id=employee_id))


@api_blueprint.route("/employees/<int:employee_id>/onboarding-links", methods=["POST"])
@requires("onboarding:write", action="onboarding.link_create")
@accepts(body=s.LinkCreate, returns=s.Link, status=201, errors=(409,))
def create_link(employee_id: int, body: s.LinkCreate) -> ResponseReturnValue:
    """A one-time onboarding link for an employee (shown once)."""
    app = appliance()
    purpose = body.purpose
    row, token = onboarding.create_link(db(), state().actor, app.settings, employee_id, purpose=purpose)
    audit_resource("onboarding", row.id)
    audit_detail(employee_id=employee_id, purpose=purpose)
    return respond({"id": row.id, "employee_id": employee_id, "purpose": purpose,
                    "expires_at": json_value(row.expires_at),
                    "url": onboarding.link_url(app.settings, token)}, 201)


@api_blueprint.route("/onboarding-links/<int:link_id>/revoke", methods=["POST"])
@requires("onboarding:write", action="onboarding.link_revoke")
@accepts(body=NoInput, returns=s.LinkRevoked)
def revoke_link(link_id: int) -> ResponseReturnValue:
    """Revoke an onboarding link."""
    row = onboarding.revoke_link(db(), link_id)
    return respond({"id": row.id, "state": onboarding.link_state(row)})


@api_blueprint.route("/employees/import", methods=["POST"])
@requires("employees:write", action="employees.import")
@accepts(raw_body="text/csv", returns=s.Imported, status=201, errors=(409,))
def import_employees(body: bytes) -> ResponseReturnValue:
    """Import employees from CSV as an upsert (by external id, then e-mail), with a report per row."""
    report = roster_sync.import_rows(db(), body, actor_label=state().actor.label, via="API")
    from appliance.services.attestations.campaigns import ensure_initial_tasks

    ensure_initial_tasks(db(), appliance().settings)  # new access persons get their initial-holdings task
    done = [c for c in report.changes if c.kind in ("created", "updated")]
    audit_detail(imported=len(done), created=report.count("created"), updated=report.count("updated"),
                 rejected=report.count("rejected"))
    return respond({"imported": len(done), "ids": [c.employee_id for c in done if c.employee_id is not None],
                    "created": report.count("created"), "updated": report.count("updated"),
                    "unchanged": report.count("unchanged"), "rejected": report.count("rejected"),
                    "rows": [{"where": c.where, "kind": c.kind, "email": c.email, "employee_id": c.employee_id,
                              "reason": c.reason, "fields": [list(f) for f in c.fields]} for c in report.changes]},
                   201)


@api_blueprint.route("/connections/<int:connection_id>/sync", methods=["POST"])
@requires("connections:write", action="connections.sync_now")
@accepts(body=NoInput, returns=s.SyncRequested, status=202)
def sync_now(connection_id: int) -> ResponseReturnValue:
    """Poll a connection at the next tick."""
    connection = sync.request_sync(db(), connection_id)
    return respond({"id": connection.id, "next_poll_at": json_value(connection.next_poll_at)}, 202)


@requires("system:read", action="metrics.scrape")
@accepts(media=("text/plain",))
def prometheus() -> ResponseReturnValue:
    """Prometheus metrics (text exposition format)."""
    return Response(metrics.render(appliance(), db()), mimetype="text/plain; version=0.0.4")


