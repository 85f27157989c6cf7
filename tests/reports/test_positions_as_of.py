"""Prediction-market positions in the holdings report: as observed at the end of the day (a real Polymarket
sync against the simulator, its observations moved 10 days back), valued at that day's market price converted
to the base currency, today at the current prices — and not invented before their first observation."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from appliance.rbac.actors import system_actor
from appliance.services import employees, onboarding
from appliance.store.models import PredictionPosition, PriceObservation
from tests.reports.conftest import api
from tests.support.sim import RunningSim
from tests.valuation.conftest import api_get, employee_of, sync_and_price


def test_positions_as_of_a_day(sta: Any, sim: RunningSim) -> None:
    address = sim.control("POST", "polymarket/wallets", {"positions": 3, "trades": 0, "activity": 0})["address"]
    app = sta.appliance
    with app.store.unit_of_work() as session:
        person = employees.create(session, name="Pat Poly", email="pat@example.com")
        row, _token = onboarding.create_link(session, system_actor("t"), sta.settings, person.id)
        link = onboarding.Link(row.id, row.employee_id, row.purpose, False, row.expires_at)
        cid = onboarding.record_wallet(session, link, app.venues.get("polymarket"), address, "").id
    sync_and_price(sta, cid)
    now = dt.datetime.now(dt.UTC)
    current = {(p["market_id"], p["outcome"]): p for p in api_get(
        sta, f"/employees/{employee_of(sta, cid)}/predictions")["positions"]}
    assert current

    today = api(sta, f"/reports/holdings?as_of={now.date().isoformat()}").get_json()
    rows = {(r["market_id"], r["outcome"]): r for r in today["rows"] if r["kind"] == "prediction"}
    assert set(rows) == set(current)
    for key, row in rows.items():
        assert Decimal(row["quantity"]) == Decimal(current[key]["size"])
        assert Decimal(row["principal_amount"]) == Decimal(current[key]["value"]).quantize(Decimal("0.01"))

    back = dt.timedelta(days=10)
    with app.store.unit_of_work() as session:
        for position in session.execute(select(PredictionPosition).where(
                PredictionPosition.connection_id == cid)).scalars():
            position.valid_from -= back
            position.observed_until -= back
        for observation in session.execute(select(PriceObservation).where(PriceObservation.kind == "market")).scalars():
            observation.at -= back
    day = (now - back).date()
    past = api(sta, f"/reports/holdings?as_of={day.isoformat()}").get_json()
    rows = {(r["market_id"], r["outcome"]): r for r in past["rows"] if r["kind"] == "prediction"}
    assert set(rows) == set(current), "the positions observed that day"
    for row in rows.values():
        assert row["basis"] == "observed"
        assert row["principal_amount"] != "unpriced", row  # the market's price that day, USDC/USD that day
        assert "polymarket" in row["price_source"]
        assert Decimal(row["principal_amount"]) == (Decimal(row["quantity"]) * Decimal(row["price"])).quantize(
            Decimal("0.01"))
    before = api(sta, f"/reports/holdings?as_of={(now - dt.timedelta(days=20)).date().isoformat()}").get_json()
    assert not [r for r in before["rows"] if r["kind"] == "prediction"], "positions are not invented before"
