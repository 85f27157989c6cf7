"""End to end through the real path: onboard a read-only key (probe, seal), poll once, read it back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from appliance.services.sync import run_cycle
from appliance.store.models import BalanceSnapshot, Connection, Transaction
from tests.support.sim import RunningSim
from tests.sync.conftest import onboard


def test_onboard_and_poll(sta: Any, sim: RunningSim) -> None:
    connection_id, _key = onboard(sta, sim, "kraken", history={"trades": 30, "deposits": 5, "withdrawals": 3})
    result = run_cycle(sta.appliance)
    assert [o.ok for o in result.outcomes] == [True], result.lines()
    with sta.store.read() as session:
        status = session.get(Connection, connection_id).status  # type: ignore[union-attr]
        txs = session.execute(select(func.count()).select_from(Transaction)).scalar_one()
        balances = session.execute(select(func.count()).select_from(BalanceSnapshot)).scalar_one()
    assert status == "active"
    assert txs > 0
    assert balances > 0
    again = run_cycle(sta.appliance, only=connection_id, force=True)
    assert again.outcomes[0].ok
    assert again.outcomes[0].records == 0
