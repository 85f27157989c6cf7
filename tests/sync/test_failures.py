"""Transient failures are visible, never silent: a venue outage opens a ``venue_down`` gap and turns the
connection degraded, and the gap is filled and closed when the venue comes back; a 429 is honoured
(next poll, shared venue limiter) and recorded as a ``rate_limited`` gap; too many failures break the
connection; a tampered credential is answered once per cycle, not in a loop.

Simulating an hour: the tests do not wait. After the outage starts they move the stored times of
the connection back by an hour — the open gap's ``start_at``, the ``complete`` interval's ``end_at``
and the connection's last success — and add venue activity stamped inside that hour, which is what
an hour of polls against a dead venue would have left behind. Each retry is made due by setting
``next_poll_at`` to now (the backoff it computed is checked first).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, update

from appliance.services.sync import run_cycle
from appliance.store.models import Alert, Connection, CoverageInterval
from tests.support.sim import RunningSim
from tests.sync.conftest import connection, detached, make_due, onboard, sim_stream_ids, stored_ids

HOUR = dt.timedelta(hours=1)


def coverage(sta: Any, connection_id: int, kind: str) -> list[CoverageInterval]:
    """The connection's intervals of ``kind``, less the standing ones a venue's documentation implies (history
    its API does not reach: OKX serves three months of fills; records it serves that are not read yet: Coinbase
    app trades), which no outage opens or closes."""
    with sta.store.read() as session:
        return detached(session, list(session.execute(select(CoverageInterval).where(
            CoverageInterval.connection_id == connection_id, CoverageInterval.kind == kind,
            CoverageInterval.reason.not_in(("history_limit", "not_read")))
            .order_by(CoverageInterval.stream, CoverageInterval.id)).scalars()))


def backdate_outage(sta: Any, connection_id: int, by: dt.timedelta) -> None:
    """Move the open gaps' start, the complete intervals' end and the last success back by ``by``."""
    with sta.store.unit_of_work() as session:
        for row in session.execute(select(CoverageInterval).where(
                CoverageInterval.connection_id == connection_id)).scalars():
            if row.kind == "gap" and row.closed_at is None:
                row.start_at -= by
            elif row.kind == "complete" and row.end_at is not None:
                row.end_at -= by
        found = session.get(Connection, connection_id)
        assert found is not None and found.last_success_at is not None
        found.last_success_at -= by


# Venues whose history can be fetched again after an outage (an incremental cursor or a time window
# that resumes where the last complete page ended).
BACKFILL_VENUES = ["kraken", "okx", "coinbase"]


@pytest.mark.parametrize("venue", BACKFILL_VENUES)
def test_an_hour_long_outage_is_a_gap_that_is_filled_when_the_venue_returns(
        sta_factory: Callable[..., Any], sim: RunningSim, venue: str) -> None:
    sta = sta_factory(poller={"failure_threshold": 10})
    cid, key = onboard(sta, sim, venue, history={"trades": 5, "deposits": 2, "withdrawals": 1})
    assert run_cycle(sta.appliance).outcomes[0].ok
    streams = sta.appliance.venues.get(venue).streams
    assert {c.stream for c in coverage(sta, cid, "complete")} == set(streams)

    sim.control("POST", f"{venue}/faults", {"outage": True})
    failures = []
    for attempt in range(1, 5):  # the polls of the hour: 1, 2, 4, 8... minutes of backoff apart
        make_due(sta, cid)
        started = dt.datetime.now(dt.UTC)
        result = run_cycle(sta.appliance)
        failures.append(result.outcomes[0].error_class)
        row = connection(sta, cid)
        assert row.status == "degraded" and row.consecutive_failures == attempt
        assert row.next_poll_at is not None
        backoff = (row.next_poll_at - started).total_seconds()
        expected = 30 * 2 ** attempt
        assert 0.5 * expected - 1 <= backoff <= 1.5 * expected + 1, (attempt, backoff)
    assert set(failures) == {"transient"}
    gaps = coverage(sta, cid, "gap")
    assert {g.stream for g in gaps} == set(streams) and len(gaps) == len(streams)
    assert {(g.reason, g.closed_at) for g in gaps} == {("venue_down", None)}
    with sta.store.read() as session:
        assert session.execute(select(Alert).where(Alert.connection_id == cid)).first() is None  # not broken

    # An hour passed; the venue recorded activity meanwhile.
    backdate_outage(sta, cid, HOUR)
    during = int((time.time() - 1800) * 1000)
    sim.control("POST", f"{venue}/keys/{key['api_key']}/trades", {"count": 3, "start_ms": during})
    sim.control("POST", f"{venue}/keys/{key['api_key']}/deposits", {"count": 1, "start_ms": during})
    sim.control("DELETE", f"{venue}/faults")
    make_due(sta, cid)
    assert run_cycle(sta.appliance).outcomes[0].ok
    assert connection(sta, cid).status == "active"

    gaps = coverage(sta, cid, "gap")
    assert len(gaps) == len(streams)
    for gap in gaps:
        assert gap.reason == "venue_down" and gap.closed_at is not None and gap.end_at is not None
        assert gap.end_at - gap.start_at >= HOUR
    completes = coverage(sta, cid, "complete")
    assert {c.stream for c in completes} == set(streams)
    for complete in completes:
        assert complete.end_at is not None and complete.end_at >= gaps[0].end_at - dt.timedelta(seconds=5)
    for stream in ("trades", "deposits"):
        assert sorted(stored_ids(sta, cid, stream)) == sorted(sim_stream_ids(sim, venue, key["api_key"], stream))


def test_failures_beyond_the_threshold_break_the_connection(sta_factory: Callable[..., Any],
                                                            sim: RunningSim) -> None:
    sta = sta_factory(poller={"failure_threshold": 3})
    cid, _key = onboard(sta, sim, "kraken")
    assert run_cycle(sta.appliance).outcomes[0].ok
    sim.control("POST", "kraken/faults", {"outage": True})
    statuses = []
    for _ in range(4):
        make_due(sta, cid)
        run_cycle(sta.appliance)
        statuses.append(connection(sta, cid).status)
    assert statuses == ["degraded", "degraded", "broken", "broken"]
    with sta.store.read() as session:
        alerts = list(session.execute(select(Alert.kind).where(Alert.connection_id == cid)).scalars())
    assert alerts == ["connection_broken"]
    # Transient breakage heals by itself when the venue answers again.
    sim.control("DELETE", "kraken/faults")
    make_due(sta, cid)
    assert run_cycle(sta.appliance).outcomes[0].ok
    assert connection(sta, cid).status == "active"


def test_a_failing_first_poll_leaves_gaps_that_the_first_success_closes(sta: Any, sim: RunningSim) -> None:
    cid, _key = onboard(sta, sim, "kraken")
    sim.control("POST", "kraken/faults", {"fail_5xx": 1})
    assert run_cycle(sta.appliance).outcomes[0].error_class == "transient"
    streams = sta.appliance.venues.get("kraken").streams
    assert set(streams) == {"trades", "deposits", "withdrawals"}
    gaps = coverage(sta, cid, "gap")
    assert {g.stream for g in gaps} == {"trades", "deposits", "withdrawals"}
    make_due(sta, cid)
    assert run_cycle(sta.appliance).outcomes[0].ok
    # Exactly one gap per stream, each closed.
    assert sorted((g.stream, g.closed_at is not None) for g in coverage(sta, cid, "gap")) == \
        sorted((stream, True) for stream in streams)


def test_a_429_is_honoured_by_the_connection_and_the_venue_limiter(sta: Any, sim: RunningSim) -> None:
    cid, _key = onboard(sta, sim, "kraken")
    assert run_cycle(sta.appliance).outcomes[0].ok
    sim.control("POST", "kraken/faults", {"burst_429": 1, "retry_after": 4})
    make_due(sta, cid)
    started = dt.datetime.now(dt.UTC)
    result = run_cycle(sta.appliance)
    assert [o.error_class for o in result.outcomes] == ["rate_limit"]
    row = connection(sta, cid)
    assert row.status == "degraded" and row.last_error_class == "rate_limit"
    assert row.next_poll_at is not None
    wait = (row.next_poll_at - started).total_seconds()
    assert 3.5 <= wait <= 8, wait  # retry-after from the moment the 429 was recorded
    assert {(g.reason, g.closed_at) for g in coverage(sta, cid, "gap")} == {("rate_limited", None)}
    limiter = sta.appliance.venues.egress.limiter("kraken")
    assert 0 < limiter.blocked_for() <= 4
    # Not due yet: the next cycle leaves it alone.
    assert run_cycle(sta.appliance).outcomes == []

    # The block is the venue's, not the key's: another account of the venue waits for it too (its
    # onboarding probe is the first request to leave).
    sim.control("DELETE", "requests")
    other, _ = onboard(sta, sim, "kraken")
    first = min(r["time"] for r in sim.requests_log("kraken")) / 1000
    assert first >= started.timestamp() + 4 - 0.05
    assert run_cycle(sta.appliance, only=other, force=True).outcomes[0].ok

    # When retry-after has passed the connection heals and its gap closes.
    with sta.store.unit_of_work() as session:
        session.execute(update(Connection).where(Connection.id == cid).values(
            next_poll_at=dt.datetime.now(dt.UTC)))
    assert run_cycle(sta.appliance).outcomes[0].ok
    assert connection(sta, cid).status == "active"
    # Exactly one rate_limited gap per stream, each closed.
    assert sorted((g.stream, g.closed_at is not None) for g in coverage(sta, cid, "gap")) == \
        sorted((stream, True) for stream in sta.appliance.venues.get("kraken").streams)


def test_a_tampered_credential_is_answered_once_per_cycle(sta: Any, sim: RunningSim) -> None:
    cid, _key = onboard(sta, sim, "kraken")
    with sta.store.unit_of_work() as session:
        blob = bytearray(session.execute(select(Connection.api_secret_sealed).where(Connection.id == cid))
                         .scalar_one())
        blob[-1] ^= 1
        session.execute(update(Connection).where(Connection.id == cid).values(api_secret_sealed=bytes(blob)))
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(run_cycle(sta.appliance)), daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the cycle kept re-claiming the connection it could not open"
    [outcome] = results[0].outcomes
    assert outcome.error_class == "integrity"
    row = connection(sta, cid)
    assert row.status == "broken" and row.lease_owner is None
    assert row.next_poll_at is not None and row.next_poll_at > dt.datetime.now(dt.UTC)
    with sta.store.read() as session:
        assert list(session.execute(select(Alert.kind).where(Alert.connection_id == cid)).scalars()) == [
            "integrity_failure"]
