"""Coverage that cannot be proven is stated, not implied: Binance and Gemini answer trades only market
by market, for markets the adapter derives from balances and transfers, so their trades stream carries
a standing ``unverified_markets`` gap naming the markets read. It is kept (not duplicated) across
polls, does not hide a real outage gap, and appears in the holdings report. A venue that lists every
market's trades in one stream (Kraken) has none."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from appliance.rbac.actors import system_actor
from appliance.services import reports
from appliance.services.sync import run_cycle
from appliance.store.models import CoverageInterval
from tests.support.sim import RunningSim
from tests.sync.conftest import detached, make_due, onboard


def open_gaps(sta: Any, connection_id: int) -> list[CoverageInterval]:
    with sta.store.read() as session:
        return detached(session, list(session.execute(select(CoverageInterval).where(
            CoverageInterval.connection_id == connection_id, CoverageInterval.kind == "gap",
            CoverageInterval.closed_at.is_(None)).order_by(CoverageInterval.id)).scalars()))


def test_a_derived_market_list_is_a_standing_gap_that_an_outage_does_not_hide(sta: Any, sim: RunningSim) -> None:
    cid, _key = onboard(sta, sim, "binance", history={"trades": 6, "deposits": 2, "withdrawals": 1})
    assert run_cycle(sta.appliance).outcomes[0].ok
    (standing,) = open_gaps(sta, cid)
    assert standing.stream == "trades" and standing.reason == "unverified_markets"
    assert "derived from balances and transfers" in standing.detail and "/" in standing.detail, standing.detail
    with sta.store.read() as session:
        complete = session.execute(select(CoverageInterval).where(
            CoverageInterval.connection_id == cid, CoverageInterval.stream == "trades",
            CoverageInterval.kind == "complete")).scalar_one()
        assert (standing.start_at, standing.end_at) == (complete.start_at, complete.end_at)

    sim.control("POST", "binance/faults", {"outage": True})
    try:
        make_due(sta, cid)
        assert not run_cycle(sta.appliance).outcomes[0].ok
        reasons = sorted((g.stream, g.reason) for g in open_gaps(sta, cid))
        assert reasons == [("deposits", "venue_down"), ("trades", "unverified_markets"), ("trades", "venue_down"),
                           ("withdrawals", "venue_down")], reasons
    finally:
        sim.clear_faults()
    make_due(sta, cid)
    assert run_cycle(sta.appliance).outcomes[0].ok
    (after,) = open_gaps(sta, cid)  # the outage is filled; the standing gap is the same row, moved forward
    assert after.id == standing.id and after.end_at is not None and after.end_at > standing.end_at

    with sta.store.read() as session:
        rows = reports.holdings_rows(session, system_actor("t"), sta.settings)
    column = rows[0].index("coverage_gaps")
    assert any("trades since" in str(row[column]) and "derived from balances" in str(row[column])
               for row in rows[1:]), rows


def test_a_venue_that_lists_all_markets_has_no_standing_gap(sta: Any, sim: RunningSim) -> None:
    cid, _key = onboard(sta, sim, "kraken", history={"trades": 6, "deposits": 2, "withdrawals": 1})
    assert run_cycle(sta.appliance).outcomes[0].ok
    assert open_gaps(sta, cid) == []


def test_the_transactions_report_lists_every_stored_transaction_in_the_window(sta: Any, sim: RunningSim) -> None:
    import datetime as dt

    from appliance.store.models import Transaction

    cid, _key = onboard(sta, sim, "kraken", history={"trades": 8, "deposits": 3, "withdrawals": 2})
    assert run_cycle(sta.appliance).outcomes[0].ok
    with sta.store.read() as session:
        stored = list(session.execute(select(Transaction.venue_tx_id, Transaction.occurred_at).where(
            Transaction.connection_id == cid).order_by(Transaction.id)).all())
        everything = reports.transaction_rows(session, system_actor("t"), sta.settings, since=None, until=None)
        times = sorted(at for _id, at in stored)
        since, until = times[2], times[-2]
        window = reports.transaction_rows(session, system_actor("t"), sta.settings, since=since, until=until)
    column = everything[0].index("venue_transaction_id")
    assert [row[column] for row in everything[1:]] == [venue_id for venue_id, _at in stored]
    assert {row[column] for row in window[1:]} == {venue_id for venue_id, at in stored if since <= at < until}
    assert all(isinstance(row[2], dt.datetime) and row[2].tzinfo is not None for row in everything[1:])
