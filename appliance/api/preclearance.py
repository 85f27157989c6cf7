"""Pre-clearance for compliance: requests on an employee's behalf, the queue, decisions, history.

``POST /api/v1/preclearances`` (preclearance:write) takes ``{"employee_id", "asset" | "market_id", "venue"?,
"side", "quantity" | "notional", "reason"?}`` and answers 201 with the request as decided at once
(``approved``/``denied`` by the rules and the configuration, else ``pending``); ``POST
/api/v1/preclearances/<id>/decision`` (preclearance:decide) takes ``{"approve": bool, "comment"}``.
The employee's own side is ``/api/v1/me/preclearances`` (api/me.py).
"""

from __future__ import annotations

from flask.typing import ResponseReturnValue

from appliance.api import api_blueprint
from appliance.api import portal_schemas as ps
from appliance.api.common import respond
from appliance.api.me import request_json
from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import requires
from appliance.boundary.validation import accepts
from appliance.errors import Invalid
from appliance.services import preclearance
from appliance.services.preclearance_url import ask_from


@api_blueprint.route("/preclearances", methods=["POST"])
@requires("preclearance:write", action="preclearance.create")
@accepts(body=ps.PreclearanceCreate, status=201, returns=ps.PreclearanceOut)
def create_preclearance(body: ps.PreclearanceCreate) -> ResponseReturnValue:
    employee_id = body.employee_id
    if employee_id is None:
        raise Invalid("employee_id is required (the employee's id)", field="employee_id")
    app = appliance()
    ask = ask_from(app, {k: v for k, v in body.model_dump(exclude_none=True).items() if k != "employee_id"})
    session = db()
    row = preclearance.submit(session, app.settings, state().actor, employee_id, ask, via="dashboard")
    preclearance.notify_decision(session, app.mailer, app.settings, row)
    audit_resource("preclearance", row.id)
    audit_detail(employee_id=employee_id, status=row.status, rule_id=row.rule_id)
    return respond(request_json(row), 201)


@api_blueprint.route("/preclearances", methods=["GET"])
@requires("preclearance:read", action="preclearance.list")
@accepts(query=ps.PreclearanceQuery, returns=ps.PreclearanceList)
def list_preclearances(query: ps.PreclearanceQuery) -> ResponseReturnValue:
    rows = preclearance.listing(db(), status=query.status, employee_id=query.employee_id, limit=query.limit)
    return respond({"preclearances": [request_json(r) for r in rows]})


@api_blueprint.route("/preclearances/<int:request_id>", methods=["GET"])
@requires("preclearance:read", action="preclearance.view", resource_arg="request_id")
@accepts(returns=ps.PreclearanceOut)
def get_preclearance(request_id: int) -> ResponseReturnValue:
    return respond(request_json(preclearance.get(db(), request_id)))


@api_blueprint.route("/preclearances/<int:request_id>/decision", methods=["POST"])
@requires("preclearance:decide", action="preclearance.decide", resource_arg="request_id")
@accepts(body=ps.PreclearanceDecision, returns=ps.PreclearanceOut)
def decide_preclearance(request_id: int, body: ps.PreclearanceDecision) -> ResponseReturnValue:
    app = appliance()
    session = db()
    row = preclearance.decide(session, app.settings, state().actor, request_id, approve=body.approve,
                              comment=body.comment)
    preclearance.notify_decision(session, app.mailer, app.settings, row)
    audit_detail(employee_id=row.employee_id, status=row.status)
    return respond(request_json(row))
