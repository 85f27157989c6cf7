"""Firm-wide views (services/firm.py): holdings by asset, the holders of one asset, recent large trades — under
the caller's scope of balances:read and transactions:read (a flagged scope sees the flagged employees only)."""

from __future__ import annotations

from typing import Annotated, Any

from flask.typing import ResponseReturnValue
from pydantic import Field

from appliance.api import api_blueprint
from appliance.api import schemas as s
from appliance.api.common import json_value, respond
from appliance.api.employees import transaction_json
from appliance.api.values import value_json
from appliance.boundary.edge import appliance, db, state
from appliance.boundary.params import DecimalText, Text, Timestamp, Whole
from appliance.boundary.routes import requires
from appliance.boundary.validation import Answer, Schema, accepts
from appliance.services import employee_list, firm

Scope = Annotated[str, Field(description="The caller's scope: all (every employee) or flagged (flagged employees "
                                         "only).")]


class AssetHolding(Answer):
    asset: str
    amount: DecimalText = Field(description="Held by the employees counted, summed.")
    value: DecimalText | None = Field(description="The priced part, in `currency`; null when none of it is priced.")
    holders: int
    unpriced: int = Field(description="Holdings of the asset left out of `value` for want of a price.")
    unpriced_reason: str | None


class HoldingsByAsset(Answer):
    currency: s.Currency
    scope: Scope
    as_of: Timestamp | None = Field(description="The pricing run the figures come from (scope all); null: valued "
                                                "now from the current balances (scope flagged).")
    value_total: DecimalText | None
    assets: list[AssetHolding]


class HoldersQuery(Schema):
    page: Annotated[int, Whole(1, 1_000_000)] = 1


class AssetHolder(s.Valued):
    employee_id: int
    employee: str
    amount: DecimalText
    venues: list[str]


class Holders(Answer):
    asset: str
    currency: s.Currency
    amount: DecimalText = Field(description="Held by every holder the caller may see.")
    total: int = Field(description="Holders on every page.")
    page: int
    pages: int
    holders: list[AssetHolder]


class LargeTradesQuery(Schema):
    min_value: Annotated[str, Text(40)] | None = Field(
        default=None, description="The smallest value counted, in the firm's currency (default: "
                                  "display.large_trade_value).")
    limit: Annotated[int, Whole(1, 500)] = 50
    cursor: Annotated[str, Text(200)] | None = Field(default=None, description="The next_cursor of the previous "
                                                                               "answer.")


class LargeTrade(s.TransactionOut):
    employee_id: int
    employee: str


class LargeTrades(Answer):
    currency: s.Currency
    min_value: DecimalText
    trades: list[LargeTrade] = Field(description="Buys and sells worth at least min_value, newest first.")
    next_cursor: str | None
    searched_back_to: Timestamp | None = Field(
        description="Set when the page stopped early (few trades reach min_value in a long history): trades older "
                    "than this are not looked at yet; next_cursor looks further.")


@api_blueprint.route("/holdings/by-asset", methods=["GET"])
@requires("balances:read", action="holdings.by_asset")
@accepts(returns=HoldingsByAsset)
def holdings_by_asset() -> ResponseReturnValue:
    """What the employees the caller may see hold, per asset, largest value first."""
    found = firm.holdings_by_asset(db(), state().actor, appliance().settings)
    return respond({"currency": found.currency, "scope": found.scope, "as_of": json_value(found.as_of),
                    "value_total": json_value(found.value_total),
                    "assets": [{"asset": a.asset, "amount": json_value(a.amount), "value": json_value(a.value),
                                "holders": a.holders, "unpriced": a.unpriced, "unpriced_reason": a.reason or None}
                               for a in found.assets]})


@api_blueprint.route("/holdings/by-asset/<string:asset>", methods=["GET"])
@requires("balances:read", action="holdings.holders")
@accepts(query=HoldersQuery, returns=Holders)
def asset_holders(asset: str, query: HoldersQuery) -> ResponseReturnValue:
    """The employees holding one asset now, largest value first, 50 a page."""
    session = db()
    found = firm.holders_of(session, state().actor, appliance().settings, asset, page=query.page)
    names = employee_list.employee_names(session, (h.employee_id for h in found.rows))
    return respond({"asset": found.asset, "currency": found.currency, "amount": json_value(found.amount),
                    "total": found.total, "page": found.page, "pages": found.pages,
                    "holders": [{"employee_id": h.employee_id, "employee": names.get(h.employee_id, ""),
                                 "amount": json_value(h.amount), "venues": list(h.venues), **value_json(h.value)}
                                for h in found.rows]})


@api_blueprint.route("/transactions/large", methods=["GET"])
@requires("transactions:read", action="transactions.large")
@accepts(query=LargeTradesQuery, returns=LargeTrades)
def large_trades(query: LargeTradesQuery) -> ResponseReturnValue:
    """Recent large trades: buys and sells worth at least ``min_value`` in the firm's currency, newest first."""
    session = db()
    found = firm.large_trades(session, state().actor, appliance().settings,
                              threshold=firm.parse_threshold(query.min_value), cursor=query.cursor, limit=query.limit)
    names = employee_list.employee_names(session, (r.connection.employee_id for r in found.rows))
    return respond({"currency": found.currency, "min_value": json_value(found.threshold),
                    "next_cursor": found.next_cursor, "searched_back_to": json_value(found.searched_back_to),
                    "trades": [_trade(r, names) for r in found.rows]})


def _trade(row: firm.LargeTrade, names: dict[int, str]) -> dict[str, Any]:
    employee_id = row.connection.employee_id
    return {**transaction_json(row.transaction, row.connection, row.value), "employee_id": employee_id,
            "employee": names.get(employee_id, "")}
