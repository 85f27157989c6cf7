"""What a user meets: ``GET /api/v1/employees`` (20 employees, a JWT) through ``vigatra serve``, against a bare
Flask route on the same waitress returning a similar list, loaded by ``wrk -t2 -c32``; the ratio of their
throughputs in one run, and each one's latency percentiles.

    .venv/bin/python -m bench.bench_requests [--database sqlite|postgresql] [--seconds 10] [--rounds 3]

The appliance is the real thing: ``vigatra init`` makes its database, keys and admin, ``vigatra employee
import`` its 20 employees, ``vigatra user create`` the API user (Compliance), and ``vigatra serve`` runs it
(web app, poller, audit group commit, revocation watcher) on waitress with the configured threads. The bare
route runs in a process of its own on a waitress server made by the same function, with the same threads,
answering the same JSON shape from memory. Requests come as the TLS front would send them on loopback
(``X-Forwarded-Proto: https`` from a trusted proxy). Each round loads both, one after the other (the order
alternates between rounds); the ratio is each round's appliance req/s over the bare route's, and the
figures reported are the medians over rounds. Beside throughput and latency, each server process's CPU
time per completed request (all its threads, from /proc): on a machine shared with other work it moves
less than throughput does, and it says where a gap comes from.

``--appliance-path DIR`` runs ``vigatra`` from another checkout (the code before a change, with a
directory of any package it needs that this venv lacks) against the same bare route: before and after
in the same conditions.

Every appliance request must still be durably audited: the bench counts the audit events written during
the loads (at least one per completed request, every answer 200), and runs ``vigatra audit verify`` at the
end. The target (issue 17): the appliance at >= 50% of the bare route's throughput with p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.settings import ServerSettings
from bench.common import ROOT

EMPLOYEES = 20
PATH = "/api/v1/employees"
FRONT = {"X-Forwarded-Proto": "https"}  # what the TLS front on loopback adds
TARGET_RATIO, TARGET_P99_MS = 0.50, 50.0


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    errors: int
    cpu_ms: float = 0.0  # the server process's CPU time per completed request


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, url: str, headers: dict[str, str], *, seconds: int, connections: int) -> Load:
    before = process_cpu_seconds(pid)
    load = wrk(url, headers, seconds=seconds, connections=connections)
    load.cpu_ms = (process_cpu_seconds(pid) - before) * 1000 / max(load.requests, 1)
    return load


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, headers: dict[str, str], *, seconds: int, connections: int = 32, threads: int = 2) -> Load:
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout

    def find(pattern: str) -> re.Match[str]:
        found = re.search(pattern, out)
        if found is None:
            raise RuntimeError(f"unexpected wrk output (no {pattern!r}):\n{out}")
        return found

    p50, p99 = find(r"50%\s+([\d.]+)(us|ms|s)"), find(r"99%\s+([\d.]+)(us|ms|s)")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return Load(float(find(r"Requests/sec:\s+([\d.]+)").group(1)), _ms(*p50.groups()), _ms(*p99.groups()),
                int(find(r"(\d+) requests in").group(1)), int(non_2xx.group(1)) if non_2xx else 0,
                sum(int(n) for n in errors.groups()) if errors else 0)


# -- the bare route ------------------------------------------------------------------------------------------

def serve_bare(port: int, threads: int) -> None:
    """A plain Flask app answering a list like the appliance's, on waitress made as `vigatra serve` makes it."""
    import dataclasses

    from flask import Flask, jsonify

    from appliance.serve import create_server
    from appliance.settings import settings_from_mapping

    rows = [{"id": i, "name": f"Employee {i}", "email": f"employee{i}@example.com", "department": "Trading",
             "external_id": f"E{i:04d}", "status": "active", "created_at": "2026-12-01T10:00:00Z",
             "offboarded_at": None} for i in range(1, EMPLOYEES + 1)]
    app = Flask("bare")

    @app.get(PATH)
    def employees() -> Any:
        return jsonify({"employees": rows})

    settings = settings_from_mapping({"data_dir": tempfile.gettempdir()}, env={})
    settings = dataclasses.replace(settings, server=dataclasses.replace(settings.server, threads=threads))
    server = create_server(app, settings, "127.0.0.1", port)
    print("ready", flush=True)
    server.run()


# -- the appliance -----------------------------------------------------------------------------------------------

def _vigatra(env: dict[str, str], config: Path | None, *args: str, stdin: str | None = None) -> str:
    command = [sys.executable, "-m", "appliance.cli.main", *(["--config", str(config)] if config else []), *args]
    # Run outside the repository: `python -m` puts the working directory first on sys.path, which would
    # shadow --appliance-path.
    result = subprocess.run(command, env=env, input=stdin, capture_output=True, text=True, timeout=300, check=False,
                            cwd=tempfile.gettempdir())
    if result.returncode != 0:
        raise RuntimeError(f"vigatra {' '.join(args)}: {result.stderr}{result.stdout}")
    return result.stdout


def install(directory: Path, url: str, paths: list[str]) -> tuple[Path, dict[str, str]]:
    env = dict(os.environ)
    if paths:
        env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["VIGATRA_BENCH_KEK"] = base64.b64encode(secrets.token_bytes(32)).decode()
    env.pop("VIGATRA_CONFIG", None)
    _vigatra(env, None, "init", "--data-dir", str(directory / "data"), "--database-url", url,
             "--key-provider", "env", "--key-env", "VIGATRA_BENCH_KEK", "--yes")
    config = directory / "data" / "vigatra.yaml"
    people = io.StringIO()
    writer = csv.writer(people)
    writer.writerow(["name", "email", "department", "external_id"])
    for i in range(1, EMPLOYEES + 1):
        writer.writerow([f"Employee {i}", f"employee{i}@example.com", "Trading", f"E{i:04d}"])
    (directory / "employees.csv").write_text(people.getvalue())
    _vigatra(env, config, "employee", "import", str(directory / "employees.csv"))
    return config, env


def wait_ready(process: subprocess.Popen[str], url: str, what: str, log: Path) -> None:
    import requests

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited {process.returncode}: {log.read_text()[-3000:]}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up in 120 s")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def audit_events(url: str) -> int:
    from sqlalchemy import func, select

    from appliance.store.models import AuditEvent
    from appliance.store.session import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(AuditEvent)).scalar_one())
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seconds", type=int, default=10, help="length of each measured load")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--appliance-path", action="append", default=[], metavar="DIR",
                        help="run `vigatra` from DIR instead (a checkout of other code, e.g. before a change; "
                             "repeat for a directory of extra packages it needs), against the same bare route")
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=ServerSettings().threads,
                        help="waitress threads of both servers (default: server.threads' default)")
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare, args.threads)
        return 0
    if not shutil.which("wrk"):
        print("wrk is not installed (packaging/dev/install-test-tools.sh installs it)", file=sys.stderr)
        return 1

    import requests

    directory = Path(tempfile.mkdtemp(prefix="vigatra-bench-requests-"))
    cluster = None
    processes: list[subprocess.Popen[str]] = []
    try:
        if args.database == "postgresql":
            from tests.support.pg import start_cluster

            cluster, why = start_cluster(directory / "pg")
            if cluster is None:
                print(f"no PostgreSQL: {why}", file=sys.stderr)
                return 1
            url = cluster.fresh_database(migrated=False)
        else:
            url = f"sqlite:///{directory / 'data' / 'vigatra.db'}"
        config, env = install(directory, url, args.appliance_path)
        password = f"load-{secrets.token_urlsafe(18)}"
        _vigatra(env, config, "user", "create", "--username", "bench", "--role", "Compliance", "--password-stdin",
                 stdin=password + "\n")
        threads = args.threads
        env["VIGATRA_SERVER_THREADS"] = str(threads)

        app_port, bare_port = free_port(), free_port()
        # Their output goes to files: a pipe nobody reads would stall a server once it filled up.
        serve_log, bare_log = (directory / "serve.log").open("w"), (directory / "bare.log").open("w")
        serve = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "--config", str(config), "serve",
                                  "--port", str(app_port)], env=env, stdout=serve_log, stderr=subprocess.STDOUT,
                                 text=True, cwd=tempfile.gettempdir())
        processes.append(serve)
        bare = subprocess.Popen([sys.executable, "-m", "bench.bench_requests", "--serve-bare", str(bare_port),
                                 "--threads", str(threads)], cwd=ROOT, stdout=bare_log, stderr=subprocess.STDOUT,
                                text=True)
        processes.append(bare)
        app_url, bare_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{bare_port}"
        wait_ready(serve, f"{app_url}/healthz", "vigatra serve", directory / "serve.log")
        wait_ready(bare, f"{bare_url}{PATH}", "the bare route", directory / "bare.log")

        issued = requests.post(f"{app_url}/api/v1/auth/token", headers=FRONT, timeout=30,
                               json={"username": "bench", "password": password})
        issued.raise_for_status()
        headers = {**FRONT, "Authorization": f"Bearer {issued.json()['access_token']}"}
        ours, theirs = (requests.get(f"{app_url}{PATH}", headers=headers, timeout=30),
                        requests.get(f"{bare_url}{PATH}", headers=headers, timeout=30))
        assert ours.status_code == theirs.status_code == 200, (ours.status_code, ours.text[:300])
        assert len(ours.json()["employees"]) == len(theirs.json()["employees"]) == EMPLOYEES
        print(f"answer sizes: appliance {len(ours.content)} bytes, bare {len(theirs.content)} bytes")

        targets = {"bare": (bare.pid, f"{bare_url}{PATH}"), "appliance": (serve.pid, f"{app_url}{PATH}")}
        for _pid, target in targets.values():  # warm up both (imports, pools, caches)
            wrk(target, headers, seconds=3, connections=args.connections)
        events_before = audit_events(url)
        results: dict[str, list[Load]] = {"bare": [], "appliance": []}
        for number in range(args.rounds):
            order = ("bare", "appliance") if number % 2 == 0 else ("appliance", "bare")
            for name in order:
                pid, target = targets[name]
                results[name].append(measured(pid, target, headers, seconds=args.seconds,
                                              connections=args.connections))
        events = audit_events(url) - events_before
        verify = _vigatra(env, config, "audit", "verify")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        if cluster is not None:
            cluster.stop()
        log = directory / "serve.log"
        errors = [line for line in log.read_text().splitlines() if " ERROR " in line] if log.exists() else []
        if errors:
            print("vigatra serve logged errors:\n" + "\n".join(errors[-20:]))
        shutil.rmtree(directory, ignore_errors=True)

    ratios = [a.rps / b.rps for a, b in zip(results["appliance"], results["bare"], strict=True)]
    served = sum(load.requests for load in results["appliance"])
    failed = sum(load.non_2xx + load.errors for loads in results.values() for load in loads)
    print(f"\n### GET {PATH} ({EMPLOYEES} employees, JWT), {args.database}, wrk -t2 -c{args.connections}, "
          f"{args.rounds} rounds of {args.seconds} s\n")
    print("| round | bare req/s | bare p50 / p99 ms | bare CPU ms/req | appliance req/s | appliance p50 / p99 ms "
          "| appliance CPU ms/req | ratio |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for number, (a, b, ratio) in enumerate(zip(results["appliance"], results["bare"], ratios, strict=True), 1):
        print(f"| {number} | {b.rps:,.0f} | {b.p50_ms:.1f} / {b.p99_ms:.1f} | {b.cpu_ms:.2f} | {a.rps:,.0f} | "
              f"{a.p50_ms:.1f} / {a.p99_ms:.1f} | {a.cpu_ms:.2f} | {ratio:.1%} |")
    ratio = statistics.median(ratios)
    p99 = statistics.median(load.p99_ms for load in results["appliance"])
    print(f"\nmedian: appliance at {ratio:.1%} of the bare route's throughput, appliance p99 {p99:.1f} ms "
          f"(target >= {TARGET_RATIO:.0%} and <= {TARGET_P99_MS:.0f} ms: "
          f"{'met' if ratio >= TARGET_RATIO and p99 <= TARGET_P99_MS else 'NOT met'})")
    print(f"audit: {events:,} events written during the loads for {served:,} completed appliance requests "
          f"(in-flight requests at the end of a load are answered and audited too); non-2xx or socket errors: "
          f"{failed}; `vigatra audit verify`: {verify.strip().splitlines()[-1] if verify.strip() else '?'}")
    if args.json:
        Path(args.json).write_text(json.dumps({name: [vars(load) for load in loads] for name, loads in results.items()}
                                              | {"ratio": ratio, "p99_ms": p99, "events": events}, indent=2))
    ok = events >= served and failed == 0
    if not ok:
        print("FAILED: requests unaudited or refused", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
