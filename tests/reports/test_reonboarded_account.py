"""An account re-onboarded with a new key is one account: the new connection reads the venue's history again,
but what the old connection stored is not stored twice, its observations end when it is replaced, and the new
one is not rolled back over days the old one observed. So the holdings of any day, the transactions of a period
and the employee's value count the account once (real ccxt syncs against the simulator, both databases)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select

from appliance.rbac.actors import system_actor
from appliance.services import onboarding
from appliance.services.filings.periods import end_of
from appliance.store.models import Connection, Transaction
from tests.reports.conftest import DAY_MS, api, holdings_by_asset, ledger_at
from tests.reports.test_holdings_as_of import kraken_read_a_month_ago, poll
from tests.support.sim import RunningSim
from tests.sync.conftest import submit_key


def reonboard(sta: Any, employee_id: int, venue: str, key: dict[str, Any]) -> int:
    """The employee submits a key to the same account again on a re-onboarding link."""
    with sta.store.unit_of_work() as session:
        row, _token = onboarding.create_link(session, system_actor("t"), sta.settings, employee_id,
                                             purpose="reonboard")
        link = onboarding.Link(row.id, row.employee_id, row.purpose, False, row.expires_at)
    return submit_key(sta, link, venue, key)


def test_a_reonboarded_account_is_counted_once(sta: Any, sim: RunningSim) -> None:
    now = dt.datetime.now(dt.UTC)
    old, key, venue_sim, account, start = kraken_read_a_month_ago(sta, sim, now)
    with sim.app.state.lock:
        venue_sim.add_trades(account, 0, explicit=[
            {"base": "BTC", "quote": "USD", "side": "buy", "amount": "0.25", "price": "40000", "fee": "1.5",
             "timestamp": start + 8 * DAY_MS}])
        venue_sim.add_deposits(account, 0, explicit=[
            {"asset": "USD", "amount": "20000", "timestamp": start + 5 * DAY_MS}])
    poll(sta, old)  # the old key reads the deposit and the trade (ETH and USDT unchanged: confirmed until now)
    with sta.store.read() as session:
        employee_id = session.execute(select(Connection.employee_id).where(Connection.id == old)).scalar_one()
    new = reonboard(sta, employee_id, "kraken", key)
    poll(sta, new)  # the new key reads the account again, its history included

    with sta.store.read() as session:
        stored = dict(session.execute(select(Transaction.connection_id, func.count()).where(
            Transaction.connection_id.in_([old, new])).group_by(Transaction.connection_id)).all())
        statuses = dict(session.execute(select(Connection.id, Connection.status).where(
            Connection.id.in_([old, new]))).all())
    assert statuses[old] == "superseded" and stored == {old: 2}, stored  # nothing stored twice

    for day in ((now - dt.timedelta(days=40)).date(),  # before the old key's first reading: rolled back
                (now - dt.timedelta(days=20)).date(),  # the old key's first reading and the transactions since
                # (BTC and USD from their own confirmation 30 days back, not from ETH's, confirmed today)
                now.date()):  # the new key's reading
        body = api(sta, f"/reports/holdings?as_of={day.isoformat()}").get_json()
        expected = ledger_at(sim, "kraken", key["api_key"], min(end_of(day), now))
        assert holdings_by_asset(body) == expected, (day, body["rows"])

    since, until = (now - dt.timedelta(days=40)).date(), now.date()
    rows = api(sta, f"/reports/transactions?from={since.isoformat()}&to={until.isoformat()}").get_json()["rows"]
    assert sorted((r["asset"], r["nature"]) for r in rows) == [("BTC", "buy"), ("USD", "other acquisition")]
