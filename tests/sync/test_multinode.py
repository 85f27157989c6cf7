"""Several nodes on one PostgreSQL: polling split by leases, every connection polled exactly once per
cycle, a killed node's leases taken over once they expire, and a database restart mid-cycle that the
poller gets over by itself. PostgreSQL only: on SQLite there is one node per database file."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from appliance.poller.jobs import poll_tick
from appliance.store.models import Connection, PollCycle, Transaction
from tests.support.proc import VIGATRA, Installed, serve
from tests.support.sim import RunningSim
from tests.sync.conftest import (
    current_balances,
    make_due,
    onboard,
    sim_balances,
    sim_stream_ids,
    stored_ids,
    write_config,
)

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


def kraken_requests(sim: RunningSim, path: str, since_ms: int = 0) -> list[tuple[str, int]]:
    """(API key, time) of every request to a Kraken private endpoint."""
    with sim.app.state.lock:
        entries = list(sim.app.state.log)
    out = []
    for entry in entries:
        if entry["venue"] == "kraken" and entry["path"] == path and entry["time"] >= since_ms:
            headers = {k.lower(): v for k, v in entry["headers"].items()}
            out.append((headers.get("api-key", ""), int(entry["time"])))
    return out


def lease_rows(session: Any) -> dict[int, tuple[str, dt.datetime]]:
    return {cid: (owner, until) for cid, owner, until in session.execute(select(
        Connection.id, Connection.lease_owner, Connection.lease_expires_at).where(
        Connection.lease_owner.is_not(None)))}


def poll_once(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*VIGATRA, "--config", str(config), "poll", "--once"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=dict(os.environ))


def onboard_many(sta: Any, sim: RunningSim, count: int, history: dict[str, int]) -> dict[int, str]:
    return {cid: key["api_key"] for cid, key in (onboard(sta, sim, "kraken", history=history) for _ in range(count))}


def test_two_processes_poll_every_connection_exactly_once_per_cycle(sta: Any, sim: RunningSim,
                                                                    tmp_path: Path) -> None:
    keys = onboard_many(sta, sim, 40, {"trades": 3, "deposits": 1, "withdrawals": 1})
    config = write_config(sta, tmp_path / "vigatra.yaml", poller={"workers": 4})
    sim.control("POST", "kraken/faults", {"latency_ms": 60})
    for cycle in (1, 2):
        make_due(sta, *keys)
        since = int(time.time() * 1000)
        processes = [poll_once(config), poll_once(config)]
        outputs = [p.communicate(timeout=120)[0] for p in processes]
        assert [p.returncode for p in processes] == [0, 0], outputs
        for path in ("/0/private/BalanceEx", "/0/private/TradesHistory"):
            per_key = Counter(key for key, _ in kraken_requests(sim, path, since))
            assert per_key == Counter(dict.fromkeys(keys.values(), 1)), (cycle, path)
        with sta.store.read() as session:
            cycles = list(session.execute(select(PollCycle.node, PollCycle.polled, PollCycle.succeeded)
                                          .order_by(PollCycle.id.desc()).limit(2)).all())
            statuses = set(session.execute(select(Connection.status)).scalars())
        assert len({node for node, _, _ in cycles}) == 2, "the two processes must have distinct node ids"
        assert sum(polled for _, polled, _ in cycles) == 40 and sum(ok for _, _, ok in cycles) == 40
        assert all(polled > 0 for _, polled, _ in cycles), f"one node did all the work: {cycles}"
        assert statuses == {"active"}


def test_a_killed_node_s_leases_are_taken_over_when_they_expire(sta: Any, sim: RunningSim, tmp_path: Path) -> None:
    lease = 10
    keys = onboard_many(sta, sim, 24, {"trades": 120, "deposits": 60, "withdrawals": 10})
    config = write_config(sta, tmp_path / "vigatra.yaml", poller={
        "enabled": True, "tick_seconds": 1, "workers": 3, "lease_seconds": lease})
    installed = Installed(config, "", dict(os.environ))
    sim.control("POST", "kraken/faults", {"latency_ms": 250})
    servers = [serve(installed), serve(installed)]
    try:
        # Wait until both nodes hold leases, then kill one of them mid-poll.
        deadline = time.monotonic() + 60
        while True:
            with sta.store.read() as session:
                owners = Counter(session.execute(select(Connection.lease_owner).where(
                    Connection.lease_owner.is_not(None))).scalars())
            if len(owners) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(owners) == 2, f"both nodes should be polling: {owners}"
        servers[0].process.send_signal(signal.SIGKILL)
        servers[0].process.wait(timeout=10)
        killed_at = dt.datetime.now(dt.UTC)
        with sta.store.read() as session:
            before = lease_rows(session)
        # The dead node is the one whose leases nobody renews any more: the survivor renews its own after
        # every page (a few hundred milliseconds apart here) and gives them back when a sync ends.
        time.sleep(2)
        with sta.store.read() as session:
            after = lease_rows(session)
        # Only an owner that held leases at the kill can be the frozen one (all() over no leases is true).
        frozen = set()
        for owner in owners:
            held = {c: r for c, r in before.items() if r[0] == owner}
            if held and all(after.get(c) == r for c, r in held.items()):
                frozen.add(owner)
        assert len(frozen) == 1, (owners, before, after)
        victim = frozen.pop()
        orphans = {cid: until for cid, (owner, until) in before.items() if owner == victim}
        assert orphans

        # The survivor finishes everything, the orphans once their leases have expired.
        deadline = time.monotonic() + lease + 45
        while time.monotonic() < deadline:
            with sta.store.read() as session:
                pending = session.execute(select(func.count()).select_from(Connection).where(
                    Connection.last_success_at.is_(None))).scalar_one()
            if not pending:
                break
            time.sleep(0.2)
        assert not pending, f"{pending} connection(s) never completed"
        with sta.store.read() as session:
            done = dict(session.execute(select(Connection.id, Connection.last_success_at).where(
                Connection.id.in_(orphans))).all())
        for cid, until in orphans.items():
            # Its lease ran out within lease_seconds of the kill; nobody polled it before then; the survivor
            # took it over at its next tick after that and finished it.
            assert until <= killed_at + dt.timedelta(seconds=lease)
            taken = [t / 1000 for key, t in kraken_requests(sim, "/0/private/BalanceEx") if key == keys[cid]]
            after_kill = [t for t in taken if t > killed_at.timestamp()]
            assert after_kill, cid
            assert until.timestamp() - 0.05 <= min(after_kill) <= until.timestamp() + 8, (cid, after_kill, until)
            assert done[cid] <= until + dt.timedelta(seconds=lease), (cid, done[cid], until)
    finally:
        # Lease takeover is the subject here; a graceful stop has its own tests (SIGTERM in tests/sync).
        for server in servers:
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait(timeout=30)
    for cid, api_key in keys.items():
        for stream in ("trades", "deposits", "withdrawals"):
            stored = stored_ids(sta, cid, stream)
            assert len(stored) == len(set(stored))
            assert set(stored) == sim_stream_ids(sim, "kraken", api_key, stream)


def restart(cluster: Any) -> None:
    """``PostgresCluster.restart()`` without its two problems: it runs ``pg_ctl restart`` with captured
    output and no log file, so the new postmaster inherits pg_ctl's pipes and subprocess.run waits for
    an EOF that never comes; and the cluster's admin engine keeps its dead pooled connections, so the
    next test's fresh_database() fails. Same restart (immediate mode, options from postmaster.opts),
    logging to a file, then the admin pool is emptied."""
    if cluster is None or cluster.data_dir is None:
        pytest.skip("needs the PostgreSQL cluster started by the tests (not VIGATRA_TEST_POSTGRES_URL)")
    try:
        cluster.pg_ctl("-m", "immediate", "-w", "-t", "60", "-l", str(cluster.data_dir.parent / "server.log"),
                       "restart")
    finally:
        cluster.engine.dispose()


def test_the_poller_recovers_by_itself_from_a_postgresql_restart_mid_cycle(
        sta_factory: Any, sim: RunningSim, pg_cluster: Any, caplog: pytest.LogCaptureFixture) -> None:
    sta = sta_factory(poller={"workers": 3, "tick_seconds": 1})
    keys = onboard_many(sta, sim, 9, {"trades": 150, "deposits": 50, "withdrawals": 10})
    sim.control("POST", "kraken/faults", {"latency_ms": 150})
    app = sta.appliance
    tick = threading.Thread(target=poll_tick, args=(app,), daemon=True)
    tick.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait for the cycle to be in the middle of its page commits
        with sta.store.read() as session:
            if session.execute(select(func.count()).select_from(Transaction)).scalar_one() >= 100:
                break
        time.sleep(0.05)
    assert tick.is_alive(), "the cycle ended before the restart"
    restart(pg_cluster)
    tick.join(60)
    assert not tick.is_alive()
    interrupted = [r.getMessage() for r in caplog.records if r.name.startswith("appliance.services.sync")]
    assert any("interrupted by the database" in m or "could not record its outcome" in m for m in interrupted)

    # The scheduler ticks on, with the same Appliance: later cycles succeed without a restart of it.
    sim.clear_faults()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        poll_tick(app)
        with sta.store.read() as session:
            done = session.execute(select(func.count()).select_from(Connection).where(
                Connection.status == "active", Connection.lease_owner.is_(None))).scalar_one()
        if done == len(keys):
            break
        time.sleep(1)
    assert done == len(keys)
    make_due(sta, *keys)
    poll_tick(app)  # catch up with whatever the interrupted runs pinned out of their windows
    with sta.store.read() as session:
        last = session.execute(select(PollCycle).order_by(PollCycle.id.desc())).scalars().first()
        assert last is not None and last.polled == len(keys) and last.succeeded == len(keys)
    for cid, api_key in keys.items():
        for stream in ("trades", "deposits", "withdrawals"):
            stored = stored_ids(sta, cid, stream)
            assert len(stored) == len(set(stored))
            assert set(stored) == sim_stream_ids(sim, "kraken", api_key, stream)
        assert current_balances(sta, cid) == sim_balances(sim, "kraken", api_key)
