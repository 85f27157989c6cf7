"""Holdings as of a past day equal the simulator's ledger replayed to the end of that day: real ccxt syncs
against the simulator at two points in time (the first one moved 30 days back), events in between, and an
account read only once (its first reading rolled back over its history)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from appliance.services.filings.periods import end_of
from appliance.services.sync import run_cycle
from appliance.store.models import BalanceSnapshot
from tests.reports.conftest import DAY_MS, api, holdings_by_asset, ledger_at, ms
from tests.support.sim import RunningSim
from tests.sync.conftest import onboard, sim_account

QUIET = {"trades": 0, "deposits": 0, "withdrawals": 0}


def poll(sta: Any, connection_id: int) -> None:
    cycle = run_cycle(sta.appliance, only=connection_id, force=True)
    assert cycle.outcomes and not cycle.failed, cycle.lines()


def move_observations_back(sta: Any, connection_id: int, delta: dt.timedelta) -> None:
    """Pretend the connection's readings so far were taken ``delta`` earlier (the account did not change since:
    its simulator account has no events in between)."""
    with sta.store.unit_of_work() as session:
        for row in session.execute(select(BalanceSnapshot).where(
                BalanceSnapshot.connection_id == connection_id)).scalars():
            row.valid_from -= delta
            row.observed_until -= delta


def kraken_read_a_month_ago(sta: Any, sim: RunningSim, now: dt.datetime
                            ) -> tuple[int, dict[str, Any], Any, Any, int]:
    """A Kraken key onboarded and read once (the seeded balances, no history), that reading moved 30 days back:
    (connection, key, the simulator's venue and account, the moment of that reading in ms)."""
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    poll(sta, cid)
    move_observations_back(sta, cid, dt.timedelta(days=30))
    venue_sim, account = sim_account(sim, "kraken", key["api_key"])
    return cid, key, venue_sim, account, ms(now) - 30 * DAY_MS


def test_holdings_as_of_past_days_equal_the_ledger_replayed(sta: Any, sim: RunningSim) -> None:
    now = dt.datetime.now(dt.UTC)
    cid, key, venue_sim, account, start = kraken_read_a_month_ago(sta, sim, now)
    with sim.app.state.lock:
        venue_sim.add_trades(account, 0, explicit=[
            {"base": "BTC", "quote": "USD", "side": "buy", "amount": "0.25", "price": "40000", "fee": "1.5",
             "timestamp": start + 8 * DAY_MS},
            {"base": "ETH", "quote": "USDT", "side": "sell", "amount": "1.5", "price": "2500", "fee": "0.75",
             "timestamp": start + 20 * DAY_MS}])
        venue_sim.add_deposits(account, 0, explicit=[
            {"asset": "USD", "amount": "20000", "timestamp": start + 5 * DAY_MS}])
        venue_sim.add_withdrawals(account, 0, explicit=[
            {"asset": "BTC", "amount": "0.1", "fee": "0.0005", "timestamp": start + 25 * DAY_MS}])
    poll(sta, cid)  # second reading: everything above, now

    days = [(now - dt.timedelta(days=40)).date(),  # before the first reading: rolled back (nothing in between)
            (now - dt.timedelta(days=29)).date(),  # the first reading, no event yet
            (now - dt.timedelta(days=20)).date(),  # deposit and buy since the first reading
            (now - dt.timedelta(days=8)).date(),  # and the sell
            (now - dt.timedelta(days=2)).date(),  # and the withdrawal
            now.date()]  # the second reading
    seen = []
    for day in days:
        answer = api(sta, f"/reports/holdings?as_of={day.isoformat()}")
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        expected = ledger_at(sim, "kraken", key["api_key"], min(end_of(day), now))
        assert holdings_by_asset(body) == expected, day
        seen.append(expected)
        bases = {row["basis"] for row in body["rows"] if row["kind"] == "balance"}
        if day == days[2]:
            assert "observed+transactions" in bases
        if day == days[0]:
            assert bases == {"rolled back"}
        assert any("Holdings at the end of" in note for note in body["notes"]), "the method is on the report"
    assert len({tuple(sorted(s.items())) for s in seen}) == 4, "four different holdings over the month"


def test_an_account_read_once_is_rolled_back_over_its_history(sta: Any, sim: RunningSim) -> None:
    cid, key = onboard(sta, sim, "kraken", history={"trades": 12, "deposits": 4, "withdrawals": 3})
    poll(sta, cid)
    now = dt.datetime.now(dt.UTC)
    for back in (89, 60, 45, 10):
        day = (now - dt.timedelta(days=back)).date()
        body = api(sta, f"/reports/holdings?as_of={day.isoformat()}").get_json()
        assert holdings_by_asset(body) == ledger_at(sim, "kraken", key["api_key"], end_of(day)), back
        assert all(row["basis"] == "rolled back" for row in body["rows"])
        assert all(Decimal(row["transactions_applied"]) >= 0 for row in body["rows"])
