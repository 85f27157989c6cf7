"""Shared benchmark plumbing: an appliance on a scratch database, a real waitress server, and a load
generator in another process (wrk when installed, else a Python client pool) on loopback.

Benchmarks report ratios against a baseline measured in the same run, so the machine's speed
cancels out; absolute figures are printed too, with the command that produced them.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class Load:
    requests_per_second: float
    latency_ms_p50: float | None
    errors: int
    tool: str
    requests: int = 0  # completed in the run


def start_server(wsgi_app: Any, threads: int = 8) -> tuple[str, Any]:
    import logging

    import waitress.server

    # Under a load generator every thread is busy by design: waitress's "Task queue depth" warning would
    # print thousands of lines.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)

    server = waitress.server.create_server(wsgi_app, host="127.0.0.1", port=0, threads=threads, ident="",
                                           clear_untrusted_proxy_headers=False,
                                           channel_timeout=120, connection_limit=1000, backlog=2048)
    threading.Thread(target=server.run, daemon=True).start()
    return f"http://127.0.0.1:{server.effective_port}", server


def stop_server(server: Any) -> None:
    """Stop the worker threads before closing the sockets (a worker finishing a task after the close
    would write to a closed trigger and print EBADF tracebacks)."""
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
    server.close()


def wrk(url: str, headers: dict[str, str], *, seconds: int, connections: int, threads: int = 2,
        cpus: set[int] | None = None, script: Path | None = None) -> Load:
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    if script is not None:
        args += ["-s", str(script)]
    pin = None
    if cpus and shutil.which("taskset"):
        # taskset rather than a preexec_fn: a preexec_fn makes Python fork() the whole server process, whose
        # copy-on-write faults afterwards would be counted as the server's work in the load that just started.
        args = ["taskset", "-c", ",".join(map(str, sorted(cpus))), *args]
    elif cpus:
        pin = lambda: os.sched_setaffinity(0, cpus)  # noqa: E731
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True, preexec_fn=pin).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    latency = None
    if p50:
        value, unit = float(p50.group(1)), p50.group(2)
        latency = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return Load(rps, latency, int(non2xx.group(1)) if non2xx else 0, "wrk", int(total.group(1)) if total else 0)


def _client_worker(targets: list[tuple[str, dict[str, str]]], seconds: float, out: Any) -> None:
    import random

    import requests

    session = requests.Session()
    choose = random.Random().choice
    done = errors = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        url, headers = choose(targets)
        response = session.get(url, headers=headers, timeout=30)
        done += 1
        errors += response.status_code >= 400
    out.put((done, errors))


def python_load(url: str, headers: dict[str, str], *, seconds: int, connections: int,
                targets: list[tuple[str, dict[str, str]]] | None = None) -> Load:
    queue: Any = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_client_worker, args=(targets or [(url, headers)], seconds, queue))
             for _ in range(connections)]
    start = time.monotonic()
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.monotonic() - start
    done = sum(r[0] for r in results)
    return Load(done / elapsed, None, sum(r[1] for r in results), "python", done)


def load(url: str, headers: dict[str, str], *, seconds: int = 10, connections: int = 16,
         cpus: set[int] | None = None) -> Load:
    """Load ``url`` from another process (on ``cpus`` when given and wrk is installed)."""
    if shutil.which("wrk"):
        return wrk(url, headers, seconds=seconds, connections=connections, cpus=cpus)
    return python_load(url, headers, seconds=seconds, connections=min(connections, 8))


def scratch_appliance(**overrides: Any) -> tuple[Any, Any]:
    """An appliance on a fresh SQLite file (or `database.url` in overrides) with the test personas."""
    from tests.support.app import build

    directory = Path(tempfile.mkdtemp(prefix="vigatra-bench-"))
    url = overrides.pop("db_url", f"sqlite:///{directory / 'bench.db'}")
    from appliance.store.migrate import upgrade
    from appliance.store.session import make_engine

    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    built = build(url, directory / "data", **overrides)
    return built, directory


class NullAudit:
    """Stands in for the audit writer when a benchmark isolates another cost (never in the product)."""

    batches = events = 0

    def record(self, _record: object) -> int:
        return 0

    def start(self) -> None: ...

    def stop(self) -> None: ...


def print_table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def dump(path: str, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2, default=str))


def database(kind: str, base: Path, sqlite_name: str) -> tuple[str | None, Any, str]:
    """(url, cluster, why) for a bench run on ``kind``: a SQLite file under ``base``, or a fresh database in
    a PostgreSQL cluster started under ``base / "pg"`` (url None and the reason when none can start; the
    caller stops the cluster)."""
    if kind == "sqlite":
        return f"sqlite:///{base / sqlite_name}", None, ""
    from tests.support.pg import start_cluster

    cluster, why = start_cluster(base / "pg")
    if cluster is None:
        return None, None, why
    return cluster.fresh_database(migrated=False), cluster, ""
