"""SIGTERM bounds polling: a real `vigatra serve` with 60 due connections (each several pages of history,
the simulator answering slowly) exits within ``server.shutdown_timeout_seconds`` of SIGTERM, says that it
is shutting down, holds no lease afterwards, and loses nothing: a later poll brings every connection to
exactly the simulator's records. Before, the cycle kept claiming until every due connection was polled
(65 s after SIGTERM with a 30 s timeout: systemd would have SIGKILLed it)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from appliance.services.sync import run_cycle
from appliance.store.models import Connection
from tests.support.proc import Installed, serve
from tests.support.sim import RunningSim
from tests.sync.conftest import onboard, sim_stream_ids, stored_ids, write_config

CONNECTIONS = 60
TIMEOUT = 6  # server.shutdown_timeout_seconds: small, so that the work outlasts it many times over
HISTORY = {"trades": 160, "deposits": 60, "withdrawals": 10}  # 4 + 2 + 1 pages of 50 (Kraken)


def test_sigterm_with_60_due_connections_exits_within_the_timeout_with_no_lease_left_and_nothing_lost(
        sta: Any, sim: RunningSim, tmp_path: Path) -> None:
    keys = {cid: key["api_key"] for cid, key in (onboard(sta, sim, "kraken", history=HISTORY)
                                                 for _ in range(CONNECTIONS))}
    config = write_config(sta, tmp_path / "vigatra.yaml", server={"shutdown_timeout_seconds": TIMEOUT},
                          poller={"enabled": True, "tick_seconds": 1, "workers": 4, "lease_seconds": 60})
    sim.control("POST", "kraken/faults", {"latency_ms": 200})  # ~2 s a connection: 30 s of work for 4 workers
    server = serve(Installed(config, "", dict(os.environ)))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # polling is under way: some done, others leased
            with sta.store.read() as session:
                done = session.execute(select(func.count()).where(Connection.last_success_at.is_not(None))
                                       .select_from(Connection)).scalar_one()
            if done >= 4:
                break
            time.sleep(0.05)
        assert done >= 4, "the poller never got going"
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        try:
            code = server.process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
            tail = server.process.stderr.read()[-3000:] if server.process.stderr else ""
            raise AssertionError(f"still running {TIMEOUT} s after SIGTERM; its log ends:\n{tail}") from None
        took = time.monotonic() - signalled
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
    log = server.process.stderr.read() if server.process.stderr else ""
    assert code == 0, log[-3000:]
    assert "Traceback" not in log
    assert "shutting down: taking no new requests or polls" in log, log[-3000:]
    assert "shutting down: polling stopped" in log, log[-3000:]

    with sta.store.read() as session:
        held = session.execute(select(Connection.id, Connection.lease_owner).where(
            Connection.lease_owner.is_not(None))).all()
        unpolled = session.execute(select(func.count()).select_from(Connection).where(
            Connection.last_success_at.is_(None))).scalar_one()
    assert held == [], f"leases left after shutdown: {held}"
    assert unpolled > 0, f"all {CONNECTIONS} connections were polled in {took:.1f} s: the test proves nothing"

    # Nothing lost, nothing doubled: the next poll (here, in this process) completes every connection.
    sim.control("POST", "kraken/faults", {"latency_ms": 0})
    for _ in range(5):
        if not run_cycle(sta.appliance).outcomes:
            break
    for cid, api_key in keys.items():
        for stream in ("trades", "deposits", "withdrawals"):
            stored = stored_ids(sta, cid, stream)
            assert len(stored) == len(set(stored)), (cid, stream)
            assert set(stored) == sim_stream_ids(sim, "kraken", api_key, stream), (cid, stream)
