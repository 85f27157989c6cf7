"""After each pricing run every employee's holdings are valued and recorded (services/valuation/snapshots.py):
the recorded figures equal the live ones the API computes, the day's row is rewritten by later runs, an
employee who sold everything is recorded at zero, and the firm's holdings per asset add up."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select

from appliance.store.models import EmployeeValue, EmployeeValueDay, FirmAssetValue, FirmValueDay
from tests.support.sim import RunningSim
from tests.sync.conftest import onboard
from tests.valuation.conftest import api_get, employee_of, poll, price, set_balances

QUIET = {"trades": 0, "deposits": 0, "withdrawals": 0}


def test_recorded_values_equal_the_live_ones_and_follow_the_holdings(sta: Any, sim: RunningSim) -> None:
    first, key1 = onboard(sta, sim, "kraken", history=QUIET)
    second, key2 = onboard(sta, sim, "kraken", history=QUIET)
    set_balances(sim, "kraken", key1["api_key"], {"BTC": "0.25", "ETH": "3"})
    set_balances(sim, "kraken", key2["api_key"], {"BTC": "1.5", "ADA": "100"})  # ADA: no venue prices it
    poll(sta, first, second)
    assert price(sta).employees_valued == 2
    ada, ben = employee_of(sta, first), employee_of(sta, second)
    live = {e: Decimal(api_get(sta, f"/employees/{e}/balances")["total"]["value"]) for e in (ada, ben)}
    with sta.store.read() as session:
        recorded = {v.employee_id: v for v in session.execute(select(EmployeeValue)).scalars()}
        assert {e: v.balances for e, v in recorded.items()} == live
        assert recorded[ben].balances_unpriced == 1 and recorded[ada].balances_unpriced == 0
        assets = {a.asset: a for a in session.execute(select(FirmAssetValue)).scalars()}
        assert assets["BTC"].amount == Decimal("1.75") and assets["BTC"].holders == 2
        assert assets["ADA"].unpriced == 1 and assets["ADA"].value == 0 and assets["ADA"].reason
        firm = session.execute(select(FirmValueDay)).scalar_one()
        assert firm.balances == sum(live.values()) and firm.employees == 2
        assert sum((a.value for a in assets.values()), Decimal(0)) == firm.balances

    set_balances(sim, "kraken", key1["api_key"], {})  # sold everything
    poll(sta, first)
    price(sta)
    with sta.store.read() as session:
        assert session.get(EmployeeValue, (ada, "USD")).balances == 0  # recorded at zero, not left stale
        days = session.execute(select(EmployeeValueDay).where(EmployeeValueDay.employee_id == ada)).scalars().all()
        assert len(days) == 1 and days[0].balances == 0  # today's row rewritten by the later run
