"""Node ids and leases: every process is a node of its own, and a node never gives back a lease it
does not hold (two processes that shared an id released each other's leases and polled the same
connections at once)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select

from appliance.errors import VenueTransient
from appliance.services.context import Appliance
from appliance.services.sync import claim_due, release_stale_leases
from appliance.services.sync.health import record_failure, release
from appliance.store.models import Connection
from tests.support.sim import RunningSim
from tests.sync.conftest import make_due, onboard

# One interpreter imports the appliance once, then starts two processes at a time, 30 times (fork: a
# fresh interpreter per process costs a second of CPU each); each builds the Appliance as `vigatra serve`
# does and writes its node id to a pipe. Forked processes share their parent's memory layout, the worst
# case for an id derived from an address (the old one was ``id(appliance) & 0xFFFF``).
_NODE_IDS_OF_60_PROCESSES = """
import os, sys
from appliance.services.context import Appliance
from appliance.settings import settings_from_mapping
settings = settings_from_mapping({"data_dir": sys.argv[1], "database": {"url": "sqlite:///" + sys.argv[1] + "/v.db"},
                                  "keys": {"provider": "env", "env_var": "VIGATRA_KEK"}}, env={})
for _round in range(30):
    pipes, pids = [], []
    for _ in range(2):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            os.write(write, Appliance(settings).node_id.encode() + b"\\n")
            os._exit(0)
        os.close(write)
        pipes.append(read)
        pids.append(pid)
    for read, pid in zip(pipes, pids):
        with os.fdopen(read, "rb") as handle:
            sys.stdout.write(handle.read().decode())
        assert os.waitpid(pid, 0)[1] == 0
"""


def test_two_processes_started_30_times_on_one_host_never_share_a_node_id(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", _NODE_IDS_OF_60_PROCESSES, str(tmp_path)], capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    seen = result.stdout.split()
    assert len(seen) == 60
    assert len(set(seen)) == 60, sorted(seen)
    host, pid, _rest = seen[0].split(":", 2)
    assert host and pid.isdigit() and len(seen[0]) <= 100  # connections.lease_owner holds 100


def leases(sta: Any) -> dict[int, str | None]:
    with sta.store.read() as session:
        return dict(session.execute(select(Connection.id, Connection.lease_owner)).all())


def test_a_node_never_releases_a_lease_it_does_not_hold(sta: Any, sim: RunningSim) -> None:
    first, a = sta, sta.appliance
    b = Appliance(sta.settings).open()  # a second node on the same database
    try:
        _other_node_leaves_the_leases_alone(first, a, b, sim)
    finally:
        b.close()


def _other_node_leaves_the_leases_alone(first: Any, a: Appliance, b: Appliance, sim: RunningSim) -> None:
    assert a.node_id != b.node_id
    ids = [onboard(first, sim, "kraken")[0] for _ in range(2)]
    make_due(first, *ids)
    assert sorted(claim_due(a, limit=10)) == sorted(ids)
    held = dict.fromkeys(ids, a.node_id)
    assert leases(first) == held

    # The other node starting a cycle, giving back "its" leftovers, answering a poll of a connection it
    # no longer holds: none of it touches the first node's leases.
    assert release_stale_leases(b) == 0
    for cid in ids:
        release(b, cid, dt.timedelta(seconds=1))
        record_failure(b, cid, VenueTransient("kraken", "down"))
    assert leases(first) == held
    assert claim_due(b, limit=10) == []

    # The holder gives them back.
    assert release_stale_leases(a) == 2
    assert leases(first) == dict.fromkeys(ids)
