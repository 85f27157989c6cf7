"""Employees and what they hold, under the caller's scope.

Convention: an employee, balance or transaction the caller may not see answers 404, exactly like
one that does not exist.
"""

from __future__ import annotations

from typing import Any

from flask.typing import ResponseReturnValue

from appliance.api import api_blueprint
from appliance.api import schemas as s
from appliance.api.common import json_value, respond
from appliance.api.values import total_json, value_json
from appliance.boundary.edge import appliance, audit_detail, audit_resource, db, state
from appliance.boundary.params import MAX_ID
from appliance.boundary.routes import requires
from appliance.boundary.validation import NoInput, accepts
from appliance.errors import Invalid
from appliance.services import connections as connection_service
from appliance.services import employee_list, preclearance_match, records
from appliance.services import employees as employee_service
from appliance.services.scope import holdings_visible
from appliance.services.valuation import read as valuation


def employee_json(employee: employee_service.EmployeeFields,
                  row: employee_service.EmployeeRow | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": employee.id, "name": employee.name, "email": employee.email, "department": employee.department,
        "external_id": employee.external_id, "status": employee.status,
        "created_at": json_value(employee.created_at), "offboarded_at": json_value(employee.offboarded_at),
        "access_person": employee.access_person,
        "access_person_since": employee.access_person_since.isoformat() if employee.access_person_since else None,
    }
    if row is not None:
        out["connections"] = row.connections
        out["connection_statuses"] = row.statuses
        out["red"] = row.red
    return out


@api_blueprint.route("/employees", methods=["GET"])
@requires("employees:read", action="employees.list")
@accepts(query=s.EmployeeQuery, returns=s.EmployeeList, errors=(400, 403))
def list_employees(query: s.EmployeeQuery) -> ResponseReturnValue:
    """Monitored employees with the health of their connections: searched, filtered, sorted, in batches of
    `limit` (follow `next_cursor`)."""
    currency = valuation.currency_of(appliance().settings)
    search = employee_list.Search(q=query.q, status=query.status, red=query.red, alerts=query.alerts,
                                  group=query.group, sort=query.sort, access_person=query.access_person)
    reader = employee_list.reader_for(state().actor, currency)
    found = employee_list.list_after(db(), search, reader, cursor=query.cursor, limit=query.limit)
    return respond({"employees": [listed_json(r) for r in found.rows], "total": found.total, "currency": currency,
                    "next_cursor": found.next_cursor})


def listed_json(row: employee_list.ListedEmployee) -> dict[str, Any]:
    return {**employee_json(row.employee, row), "open_alerts": row.open_alerts, "value": json_value(row.value),
            "unpriced": row.unpriced, "value_as_of": json_value(row.value_as_of)}


@api_blueprint.route("/employees", methods=["POST"])
@requires("employees:write", action="employees.create")
@accepts(body=s.EmployeeCreate, returns=s.Employee, status=201, errors=(409,))
def create_employee(body: s.EmployeeCreate) -> ResponseReturnValue:
    """Add an employee to monitor (an access person gets their initial-holdings task at once)."""
    from appliance.services.attestations import campaigns

    since = campaigns.parse_day(body.access_person_since, "access_person_since")
    if since is not None and not body.access_person:
        raise Invalid("access_person_since is only for an access person", field="access_person_since")
    session = db()
    employee = employee_service.create(session, name=body.name, email=body.email, department=body.department,
                                       external_id=body.external_id)
    if body.access_person:
        campaigns.set_access_person(session, appliance().settings, employee, True, since)
    audit_resource("employees", employee.id)
    audit_detail(access_person=body.access_person)
    return respond(employee_json(employee), 201)


@api_blueprint.route("/employees/<int:employee_id>", methods=["GET"])
@requires("employees:read", action="employees.view")
@accepts(returns=s.EmployeeWithHealth)
def get_employee(employee_id: int) -> ResponseReturnValue:
    """One employee with the health of their connections."""
    session = db()
    employee = employee_service.get(session, employee_id)
    rows = employee_service.list_rows(session, employee_ids=[employee.id])
    return respond(employee_json(employee, rows[0] if rows else None))


@api_blueprint.route("/employees/<int:employee_id>", methods=["PATCH"])
@requires("employees:write", action="employees.update")
@accepts(body=s.EmployeeUpdate, returns=s.Employee, errors=(409,))
def update_employee(employee_id: int, body: s.EmployeeUpdate) -> ResponseReturnValue:
    """Make an employee an access person (their initial-holdings task is created at once) or no longer one
    (their outstanding tasks are closed)."""
    from appliance.services.attestations import campaigns

    since = campaigns.parse_day(body.access_person_since, "access_person_since")
    session = db()
    employee = employee_service.get(session, employee_id)
    audit_resource("employees", employee.id)
    change = campaigns.set_access_person(session, appliance().settings, employee, body.access_person, since)
    audit_detail(access_person=body.access_person, access_person_since=(employee.access_person_since.isoformat()
                                                                         if employee.access_person_since else None),
                 tasks_created=[t.id for t in change.created], tasks_closed=change.closed)
    return respond(employee_json(employee))


@api_blueprint.route("/employees/<int:employee_id>/offboard", methods=["POST"])
@requires("employees:write", action="employees.offboard")
@accepts(body=NoInput, returns=s.Employee)
def offboard_employee(employee_id: int) -> ResponseReturnValue:
    """Offboard an employee: polling stops, records are kept."""
    return respond(employee_json(employee_service.offboard(db(), employee_id)))


@api_blueprint.route("/employees/<int:employee_id>/connections", methods=["GET"])
@requires("connections:read", action="connections.list")
@accepts(returns=s.ConnectionList)
def employee_connections(employee_id: int) -> ResponseReturnValue:
    """An employee's connections (never their credentials)."""
    session = db()
    employee_service.get(session, employee_id)
    items = connection_service.list_for_employee(session, employee_id)
    holdings = holdings_visible(session, state().actor, employee_id)
    return respond({"connections": connection_service.connections_json(session, items, holdings=holdings)})


@api_blueprint.route("/employees/<int:employee_id>/balances", methods=["GET"])
@requires("balances:read", action="balances.list")
@accepts(returns=s.BalanceList)
def employee_balances(employee_id: int) -> ResponseReturnValue:
    """An employee's current balances, under the caller's scope."""
    session = db()
    employee_service.get(session, employee_id)
    rows = records.current_balances(session, state().actor, employee_id=employee_id)
    settings = appliance().settings
    values = valuation.balance_values(session, settings, [b for b, _c in rows])
    return respond({"currency": valuation.currency_of(settings), "balances": [{
        "connection_id": c.id, "venue": c.venue, "asset": b.asset, "account": b.account,
        "amount": json_value(b.amount), "valid_from": json_value(b.valid_from),
        "observed_until": json_value(b.observed_until), "provenance": b.provenance, **value_json(v),
    } for (b, c), v in zip(rows, values, strict=True)], "total": total_json(valuation.total(values))})


@api_blueprint.route("/employees/<int:employee_id>/transactions", methods=["GET"])
@requires("transactions:read", action="transactions.list")
@accepts(query=s.TransactionQuery, returns=s.TransactionList)
def employee_transactions(employee_id: int, query: s.TransactionQuery) -> ResponseReturnValue:
    """An employee's transactions, newest first, under the caller's scope."""
    session = db()
    employee_service.get(session, employee_id)
    rows = records.transactions(session, state().actor, employee_id=employee_id, since=query.from_,
                                until=query.to, limit=query.limit, before_id=query.before)
    settings = appliance().settings
    values = valuation.transaction_values(session, settings, [t for t, _c in rows])
    outcomes = preclearance_match.outcomes_of(session, "transaction", [t.id for t, _c in rows])
    return respond({"currency": valuation.currency_of(settings),
                    "transactions": [transaction_json(t, c, values[t.id], outcomes.get(t.id)) for t, c in rows],
                    "next_before": rows[-1][0].id if rows else None})


@api_blueprint.route("/employees/<int:employee_id>/transactions/<int:transaction_id>", methods=["GET"])
@requires("transactions:read", action="transactions.view", resource_arg="transaction_id")
@accepts(returns=s.OneTransaction)
def employee_transaction(employee_id: int, transaction_id: int) -> ResponseReturnValue:
    """One of an employee's transactions."""
    from appliance.errors import NotFound

    session = db()
    # The newest transaction up to this id (before_id is exclusive; ids stop at MAX_ID, so +1 stays a BIGINT
    # for every id but the last, which no row has).
    if transaction_id >= MAX_ID:
        raise NotFound("not found")
    rows = records.transactions(session, state().actor, employee_id=employee_id, limit=1,
                                before_id=transaction_id + 1)
    if not rows or rows[0][0].id != transaction_id:
        raise NotFound("not found")
    settings = appliance().settings
    values = valuation.transaction_values(session, settings, [rows[0][0]])
    outcome = preclearance_match.outcomes_of(session, "transaction", [transaction_id]).get(transaction_id)
    return respond({"currency": valuation.currency_of(settings),
                    **transaction_json(*rows[0], values[transaction_id], outcome)})


def transaction_json(t: Any, c: Any, value: valuation.Value, preclearance: Any = None) -> dict[str, Any]:
    """A transaction; ``preclearance`` is how post-trade matching judged it (``{"status", "request_id"}``;
    null for what is not a trade, or not matched yet)."""
    return {
        "preclearance": ({"status": preclearance.status, "request_id": preclearance.request_id}
                         if preclearance is not None else None),
        "id": t.id, "connection_id": c.id, "venue": c.venue, "stream": t.stream, "venue_tx_id": t.venue_tx_id,
        "kind": t.kind, "occurred_at": json_value(t.occurred_at), "asset": t.asset, "amount": json_value(t.amount),
        "market": t.market, "quote_asset": t.quote_asset, "quote_amount": json_value(t.quote_amount),
        "trade_price": json_value(t.price), "fee_asset": t.fee_asset, "fee_amount": json_value(t.fee_amount),
        "provenance": t.provenance, "orphaned": t.orphaned, "block_number": t.block_number,
        "status": t.status, "status_changed_at": json_value(t.status_changed_at),
        "statement_import_id": t.statement_import_id, **value_json(value),
    }


