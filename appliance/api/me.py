"""The employee's own API under /api/v1/me: an employee portal session only (a dashboard token, API key or
session is refused, and an employee session is refused everywhere else). Every read is filtered on the
session's employee: another employee's record answers 404, like one that does not exist."""

from __future__ import annotations

from typing import Any

from flask.typing import ResponseReturnValue

from appliance.api import api_blueprint
from appliance.api import portal_schemas as ps
from appliance.api.common import json_value, respond
from appliance.api.employees import transaction_json
from appliance.api.oversight import position_json
from appliance.api.values import total_json, value_json
from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.routes import employee_portal
from appliance.boundary.validation import NoInput, accepts
from appliance.errors import Invalid
from appliance.services import me
from appliance.services.valuation import read as valuation
from appliance.store.models import Connection, PreclearanceRequest


def _employee_id() -> int:
    employee_id = state().actor.employee_id
    if employee_id is None:  # pragma: no cover - the guard admits employee sessions only
        raise RuntimeError("not an employee session")
    return employee_id


def own_connection_json(c: Connection) -> dict[str, Any]:
    """A connection as its owner sees it (no credential, only its fingerprint)."""
    return {"id": c.id, "kind": c.kind, "venue": c.venue, "label": c.label, "status": c.status,
            "status_reason": c.status_reason, "broken": c.status in me.BROKEN, "address": c.address or None,
            "key_fingerprint": c.key_fingerprint or None, "scope_verified": c.scope_verified,
            "last_success_at": json_value(c.last_success_at), "last_error": c.last_error or None,
            "created_at": json_value(c.created_at)}


def request_json(r: PreclearanceRequest) -> dict[str, Any]:
    return {"id": r.id, "employee_id": r.employee_id, "kind": r.kind, "asset": r.asset or None,
            "market_id": r.market_id or None, "venue": r.venue or None, "side": r.side,
            "quantity": json_value(r.quantity), "notional": json_value(r.notional), "currency": r.currency or None,
            "reason": r.decision_reason or None, "request_reason": r.reason or None, "status": r.status,
            "decided_how": r.decided_how or None, "decided_at": json_value(r.decided_at),
            "comment": r.comment or None, "valid_from": json_value(r.valid_from),
            "expires_at": json_value(r.expires_at), "tolerance_percent": json_value(r.tolerance_percent),
            "submitted_via": r.submitted_via, "created_at": json_value(r.created_at)}


@api_blueprint.route("/me", methods=["GET"])
@employee_portal(action="portal.me")
@accepts()
def me_profile() -> ResponseReturnValue:
    employee = me.profile(db(), _employee_id())
    return respond({"id": employee.id, "name": employee.name, "email": employee.email,
                    "department": employee.department, "what_the_firm_can_see": list(me.WHAT_THE_FIRM_SEES)})


@api_blueprint.route("/me/connections", methods=["GET"])
@employee_portal(action="portal.connections")
@accepts()
def me_connections() -> ResponseReturnValue:
    return respond({"connections": [own_connection_json(c) for c in me.connections(db(), _employee_id())]})


@api_blueprint.route("/me/connections/onboarding-link", methods=["POST"])
@employee_portal(action="portal.connection_onboard")
@accepts(body=NoInput, status=201)
def me_onboarding_link() -> ResponseReturnValue:
    """A one-hour onboarding link for the signed-in employee (add, replace or fix a connection)."""
    from appliance.services import onboarding, portal

    settings = appliance().settings
    link_id, token = portal.self_onboarding_link(db(), settings, state().actor, _employee_id())
    audit_resource("onboarding", link_id)
    return respond({"url": onboarding.link_url(settings, token)}, 201)


@api_blueprint.route("/me/holdings", methods=["GET"])
@employee_portal(action="portal.holdings")
@accepts()
def me_holdings() -> ResponseReturnValue:
    session = db()
    rows = me.holdings(session, _employee_id())
    settings = appliance().settings
    values = valuation.balance_values(session, settings, [b for b, _c in rows])
    return respond({"currency": valuation.currency_of(settings), "holdings": [{
        "connection_id": c.id, "venue": c.venue, "asset": b.asset, "account": b.account,
        "amount": json_value(b.amount), "valid_from": json_value(b.valid_from),
        "observed_until": json_value(b.observed_until), **value_json(v),
    } for (b, c), v in zip(rows, values, strict=True)], "total": total_json(valuation.total(values))})


@api_blueprint.route("/me/transactions", methods=["GET"])
@employee_portal(action="portal.transactions")
@accepts(query=ps.MeTransactionQuery)
def me_transactions(query: ps.MeTransactionQuery) -> ResponseReturnValue:
    session = db()
    rows = me.transactions(session, _employee_id(), limit=query.limit, before_id=query.before)
    settings = appliance().settings
    values = valuation.transaction_values(session, settings, [t for t, _c in rows])
    matches = me.matches(session, "transaction", [t.id for t, _c in rows])
    return respond({"currency": valuation.currency_of(settings), "transactions": [
        {**transaction_json(t, c, values[t.id]), "preclearance": me.match_json(matches.get(t.id))} for t, c in rows],
        "next_before": rows[-1][0].id if rows else None})


@api_blueprint.route("/me/transactions/<int:transaction_id>", methods=["GET"])
@employee_portal(action="portal.transaction", resource_arg="transaction_id")
@accepts()
def me_transaction(transaction_id: int) -> ResponseReturnValue:
    session = db()
    t, c = me.transaction(session, _employee_id(), transaction_id)
    settings = appliance().settings
    value = valuation.transaction_values(session, settings, [t])[t.id]
    match = me.matches(session, "transaction", [t.id]).get(t.id)
    return respond({"currency": valuation.currency_of(settings), **transaction_json(t, c, value),
                    "preclearance": me.match_json(match)})


@api_blueprint.route("/me/positions", methods=["GET"])
@employee_portal(action="portal.positions")
@accepts()
def me_positions() -> ResponseReturnValue:
    session = db()
    rows = me.positions(session, _employee_id())
    settings = appliance().settings
    values = valuation.position_values(session, settings, rows)
    return respond({"currency": valuation.currency_of(settings),
                    "positions": [position_json(p, c, v) for (p, c), v in zip(rows, values, strict=True)]})


@api_blueprint.route("/me/preclearances", methods=["GET"])
@employee_portal(action="portal.preclearances")
@accepts(returns=ps.PreclearanceList)
def me_preclearances() -> ResponseReturnValue:
    return respond({"preclearances": [request_json(r) for r in me.requests(db(), _employee_id())]})


@api_blueprint.route("/me/preclearances", methods=["POST"])
@employee_portal(action="portal.preclearance_create")
@accepts(body=ps.PreclearanceCreate, status=201, returns=ps.PreclearanceOut)
def me_create_preclearance(body: ps.PreclearanceCreate) -> ResponseReturnValue:
    from appliance.services import preclearance

    if body.employee_id is not None:
        raise Invalid("employee_id is not sent here: a request on the portal is always your own", field="employee_id")
    from appliance.services.preclearance_url import ask_from

    ask = ask_from(appliance(), body.model_dump(exclude_none=True))
    row = preclearance.submit(db(), appliance().settings, state().actor, _employee_id(), ask, via="portal")
    audit_resource("preclearance", row.id)
    audit_detail(status=row.status, rule_id=row.rule_id)
    return respond(request_json(row), 201)


@api_blueprint.route("/me/preclearances/<int:request_id>", methods=["GET"])
@employee_portal(action="portal.preclearance", resource_arg="request_id")
@accepts(returns=ps.PreclearanceOut)
def me_preclearance(request_id: int) -> ResponseReturnValue:
    row = me.request(db(), _employee_id(), request_id)
    audit_resource("preclearance", row.id)
    return respond(request_json(row))
