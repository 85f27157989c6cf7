"""Firm-wide pages (services/firm.py): holdings by asset, the holders of one asset, recent large trades; with
the predictions grouped by market (web/oversight.py) they share one sub-menu."""

from __future__ import annotations

from typing import Annotated

from flask import render_template
from flask.typing import ResponseReturnValue

from appliance.boundary.edge import appliance, db, state
from appliance.boundary.params import Text, Whole
from appliance.boundary.routes import requires
from appliance.boundary.validation import accepts
from appliance.services import employee_list, firm
from appliance.web import web_blueprint
from appliance.web.forms import Filters


class HoldersQuery(Filters):
    page: Annotated[int, Whole(1, 1_000_000)] = 1


class LargeTradesQuery(Filters):
    min_value: Annotated[str, Text(40)] | None = None
    cursor: Annotated[str, Text(200)] | None = None


@web_blueprint.route("/holdings")
@requires("balances:read", action="holdings.by_asset")
@accepts(media=("text/html",))
def holdings_page() -> ResponseReturnValue:
    found = firm.holdings_by_asset(db(), state().actor, appliance().settings)
    return render_template("holdings.html", found=found)


@web_blueprint.route("/holdings/<string:asset>")
@requires("balances:read", action="holdings.holders")
@accepts(query=HoldersQuery, media=("text/html",))
def asset_holders_page(asset: str, query: HoldersQuery) -> ResponseReturnValue:
    session = db()
    found = firm.holders_of(session, state().actor, appliance().settings, asset, page=query.page)
    return render_template("holders.html", found=found,
                           names=employee_list.employee_names(session, (h.employee_id for h in found.rows)))


@web_blueprint.route("/trades/large")
@requires("transactions:read", action="transactions.large")
@accepts(query=LargeTradesQuery, media=("text/html",))
def large_trades_page(query: LargeTradesQuery) -> ResponseReturnValue:
    session = db()
    settings = appliance().settings
    found = firm.large_trades(session, state().actor, settings, threshold=firm.parse_threshold(query.min_value),
                              cursor=query.cursor)
    return render_template("large_trades.html", found=found, asked=query.min_value,
                           default=firm.default_threshold(settings), first_page=query.cursor is None,
                           names=employee_list.employee_names(session, (r.connection.employee_id for r in found.rows)))
