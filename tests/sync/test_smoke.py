"""End to end through the real path: onboard a read-only key (probe, seal), poll once, read it back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from appliance.services.sync import run_cycle
from appliance.store.models import Connection, Transaction
from tests.support.sim import RunningSim
from tests.sync.conftest import current_balances, onboard, sim_balances, sim_stream_ids, stored_ids

HISTORY = {"trades": 30, "deposits": 5, "withdrawals": 3}


def test_onboard_and_poll(sta: Any, sim: RunningSim) -> None:
    connection_id, key = onboard(sta, sim, "kraken", history=HISTORY)
    result = run_cycle(sta.appliance)
    assert [o.ok for o in result.outcomes] == [True], result.lines()
    with sta.store.read() as session:
        status = session.get(Connection, connection_id).status  # type: ignore[union-attr]
        txs = session.execute(select(func.count()).select_from(Transaction)).scalar_one()
    assert status == "active"
    streams = sta.appliance.venues.get("kraken").streams
    assert set(streams) == set(HISTORY)
    for stream in streams:
        expected = sim_stream_ids(sim, "kraken", key["api_key"], stream)
        assert len(expected) == HISTORY[stream], stream
        assert sorted(stored_ids(sta, connection_id, stream)) == sorted(expected), stream
    assert txs == sum(HISTORY.values())
    balances = sim_balances(sim, "kraken", key["api_key"])
    assert balances
    assert current_balances(sta, connection_id) == balances
    again = run_cycle(sta.appliance, only=connection_id, force=True)
    assert again.outcomes[0].ok
    assert again.outcomes[0].records == 0
