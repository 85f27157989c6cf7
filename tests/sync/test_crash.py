"""kill -9 at random points of a sync, twenty times: nothing lost, nothing duplicated.

`vigatra poll --once` runs as a subprocess against the simulators of this test process, syncing
several accounts whose histories span many pages (Kraken serves 50 entries a page, OKX 100), with
latency injected so that pages, and their commits, are spread over time. Each round the process is
killed with SIGKILL after a random number of venue requests plus a random fraction of a request's
latency, so kills land between requests, inside page commits and during start-up alike; on some
rounds new activity is added at the venue while the process runs, and every round adds some before
it starts.

A restarted node has a new node id, so it waits for the dead node's leases to expire
(``poller.lease_seconds``, at least 10 s). Rather than sleep, each round ends the way expiry would:
the test sets the leases' ``lease_expires_at`` to the past and makes every connection due.

At the end one undisturbed poll runs, and for every connection and stream the stored venue ids must
equal the simulator's ``stream_ids`` exactly (as a list: a duplicate would show), and the current
balance observations must equal the simulator's balances.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from appliance.store.models import Connection
from tests.support.proc import VIGATRA
from tests.support.sim import RunningSim
from tests.sync.conftest import current_balances, onboard, sim_balances, sim_stream_ids, stored_ids, write_config

ROUNDS = 20
LATENCY_MS = 25
ACCOUNTS = [
    ("kraken", {"trades": 170, "deposits": 110, "withdrawals": 60}),
    ("kraken", {"trades": 120, "deposits": 60, "withdrawals": 30}),
    ("kraken", {"trades": 60, "deposits": 20, "withdrawals": 5}),
    ("okx", {"trades": 260, "deposits": 120, "withdrawals": 40}),
    ("okx", {"trades": 150, "deposits": 30, "withdrawals": 10}),
]
STREAMS = ("trades", "deposits", "withdrawals")


def add_activity(sim: RunningSim, venue: str, api_key: str, rng: random.Random) -> None:
    """New fills and deposits stamped after everything the venue already holds (``start_ms`` beyond
    the newest packs them just before the simulator's "now - 60 s" edge)."""
    later = int(time.time() * 1000) + 3_600_000
    sim.control("POST", f"{venue}/keys/{api_key}/trades", {"count": rng.randint(5, 70), "start_ms": later})
    if rng.random() < 0.5:
        sim.control("POST", f"{venue}/keys/{api_key}/deposits", {"count": rng.randint(1, 30), "start_ms": later})


def expire_leases_and_make_due(sta: Any) -> None:
    when = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with sta.store.unit_of_work() as session:
        session.execute(update(Connection).values(lease_expires_at=when, next_poll_at=when))


def requests_seen(sim: RunningSim) -> int:
    with sim.app.state.lock:
        return len(sim.app.state.log)


@pytest.mark.slow
def test_kill_9_twenty_times_loses_and_duplicates_nothing(sta: Any, sim: RunningSim, tmp_path: Path) -> None:
    rng = random.Random(20260807)
    accounts: list[tuple[int, str, str]] = []
    for venue, history in ACCOUNTS:
        cid, key = onboard(sta, sim, venue, history=history)
        accounts.append((cid, venue, key["api_key"]))
    config = write_config(sta, tmp_path / "vigatra.yaml", poller={"workers": 3, "lease_seconds": 10})
    for venue in ("kraken", "okx"):
        sim.control("POST", f"{venue}/faults", {"latency_ms": LATENCY_MS})

    killed = finished = 0
    for round_ in range(ROUNDS):
        if round_:
            for _cid, venue, api_key in accounts:
                if rng.random() < 0.6:
                    add_activity(sim, venue, api_key, rng)
        expire_leases_and_make_due(sta)
        with sim.app.state.lock:
            sim.app.state.log.clear()
        kill_after = rng.randint(1, 28)
        during = rng.random() < 0.3
        out = (tmp_path / f"round{round_}.log").open("w")
        process = subprocess.Popen([*VIGATRA, "--config", str(config), "poll", "--once"], stdout=out,
                                   stderr=subprocess.STDOUT, env=dict(os.environ))
        try:
            deadline = time.monotonic() + 60
            while process.poll() is None and requests_seen(sim) < kill_after and time.monotonic() < deadline:
                time.sleep(0.002)
            if during and process.poll() is None:
                _cid, venue, api_key = rng.choice(accounts)
                add_activity(sim, venue, api_key, rng)
            time.sleep(rng.uniform(0, LATENCY_MS / 1000 * 1.5))
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                killed += 1
            else:
                finished += 1
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            out.close()
        assert process.returncode in (0, -signal.SIGKILL), (tmp_path / f"round{round_}.log").read_text()
    assert killed >= ROUNDS * 3 // 4, (killed, finished)

    # Undisturbed polls complete what the kills interrupted. A run resumed from a killed run's cursor
    # finishes that run's window (Kraken pins it to the newest entry when the run began), so activity
    # that arrived later is fetched by the run after: poll until a cycle finds nothing new.
    sim.clear_faults()
    for _ in range(3):
        expire_leases_and_make_due(sta)
        final = subprocess.run([*VIGATRA, "--config", str(config), "poll", "--once"], capture_output=True,
                               text=True, timeout=120, env=dict(os.environ), check=False)
        assert final.returncode == 0, final.stderr + final.stdout
        lines = final.stdout.splitlines()
        assert f"{len(accounts)} ok, 0 failed," in lines[0], final.stdout
        if all(line.endswith(": ok, 0 new record(s)") for line in lines[1:]):
            break
    else:
        raise AssertionError(f"still fetching new records after three undisturbed polls: {final.stdout}")

    for cid, venue, api_key in accounts:
        for stream in STREAMS:
            stored = stored_ids(sta, cid, stream)
            assert len(stored) == len(set(stored)), f"duplicates in connection {cid} {stream}"
            expected = sim_stream_ids(sim, venue, api_key, stream)
            assert set(stored) == expected, (cid, venue, stream, len(stored), len(expected),
                                             sorted(expected - set(stored))[:5], sorted(set(stored) - expected)[:5])
        assert current_balances(sta, cid) == sim_balances(sim, venue, api_key), (cid, venue)
    with sta.store.read() as session:
        statuses = set(session.execute(select(Connection.status)).scalars())
        leases = list(session.execute(select(Connection.lease_owner).where(
            Connection.lease_owner.is_not(None))).scalars())
    assert statuses == {"active"}
    assert leases == []
