"""Benchmark of the sync engine: one incremental polling cycle over many connections (issue 8).

Target: 10,000 connections across venues, against the simulators with 50 ms injected latency per
request, complete one incremental cycle in under 5 minutes on 2 cores with flat memory. Reported:
total time, syncs/s, CPU ms per sync (the appliance process; the simulator's CPU is shown apart),
peak RSS during the cycle against RSS before it, and the same figures for one account synced alone
(the floor: what a sync costs with nothing else running).

How it is set up, so that only the cycle is measured:
- The simulator state is built in this process (keys minted in memory: fast), then served by a
  forked child process (waitress, ``--sim-threads``), so the simulator does not share the
  appliance's interpreter lock and its CPU is measured apart.
- Connections are inserted directly into a fresh, migrated database (SQLite file, or a database on a
  throwaway PostgreSQL cluster from tests/support/pg.py), one employee each, with their credentials
  sealed exactly as ``appliance.services.keys.seal_credentials`` seals them (AES-GCM bound to
  connections/<column>/<row id>, under the appliance's active data key); scope checked now.
- Incremental state without 10,000 first syncs (a first sync walks a venue's whole history window:
  Bybit two years in 7-day windows, KuCoin a year, Binance 90-day windows, hundreds of requests per
  account): each venue has ``--accounts-per-venue`` distinct simulator accounts, and every key of the
  venue is bound to one of them (keys are distinct, with their own secrets and signatures; accounts
  are shared). The engine runs a real first sync of one connection per distinct account (no
  latency); each other connection then gets a copy of its template's sync cursors, coverage,
  balance observations and transactions, inserted in bulk. The cursors are valid for every key of
  the account because the venue ids behind them are the account's.
- A fraction of the distinct accounts (``--active``) gets a new trade (so that fraction of the
  connections has one new record to store), latency is switched on, every connection is made due,
  and ``run_cycle`` runs once: that is the measured cycle.

Venue rate budgets (``venues.<id>.requests_per_second``) are set to ``--venue-rps`` (default 1000):
real venues allow far less per egress IP, which would make the cycle's length a property of the
venues, not of the engine. Kalshi is left out by default (minting its RSA keys costs ~50 ms each);
add it with ``--venues``.

Usage: .venv/bin/python bench/bench_sync.py [--connections 10000] [--databases sqlite postgresql]
       [--workers 32] [--sim-threads 96] [--latency-ms 50] [--active 0.1]
Prints a markdown table to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import multiprocessing
import os
import resource
import secrets
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KEK_VAR = "VIGATRA_BENCH_SYNC_KEK"
EXCHANGES = ("binance", "binanceus", "bybit", "coinbase", "gemini", "kraken", "kucoin", "okx", "bitstamp")
HISTORY = {"trades": 3, "deposits": 1, "withdrawals": 1}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the simulator, served by a forked process ---------------------------------------------------

def _serve_sim(app: Any, threads: int, conn: Any) -> None:
    import logging

    import waitress.server

    logging.getLogger("waitress").setLevel(logging.ERROR)
    server = waitress.server.create_server(app, host="127.0.0.1", port=0, threads=threads, ident="sim",
                                           connection_limit=4000, backlog=4096, channel_timeout=300)
    conn.send(server.effective_port)
    server.run()


@dataclass
class Sim:
    url: str
    process: Any

    def control(self, method: str, path: str, body: Any = None) -> Any:
        import requests

        response = requests.request(method, f"{self.url}/_sim/{path.lstrip('/')}", json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(10)


def start_sim(app: Any, threads: int) -> Sim:
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_serve_sim, args=(app, threads, child), daemon=True)
    process.start()
    port = parent.recv()
    return Sim(f"http://127.0.0.1:{port}", process)


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    def __init__(self, every: float = 0.2) -> None:
        self.every = every
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_mib()
            self.peak = max(self.peak, value)
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()


# -- the appliance on a scratch database ---------------------------------------------------------

def make_appliance(url: str, data_dir: Path, sim: Sim, venues: tuple[str, ...], workers: int, venue_rps: float,
                   pool_size: int) -> Any:
    from appliance.services.context import Appliance
    from appliance.settings import VENUE_IDS, settings_from_mapping
    from appliance.store.migrate import upgrade
    from appliance.store.session import make_engine

    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    raw = {
        "data_dir": str(data_dir), "appliance_id": "bench-sync", "database": {"url": url, "pool_size": pool_size},
        "keys": {"provider": "env", "env_var": KEK_VAR},
        "poller": {"enabled": False, "workers": workers, "lease_seconds": 900},
        "venues": {v: {"base_url": f"{sim.url}/{v}", "requests_per_second": venue_rps,
                       "unverified_policy": "accept_unverified"} for v in VENUE_IDS if v in venues},
    }
    app = Appliance(settings_from_mapping(raw, env={}))
    with app.store.unit_of_work() as session:
        app.keys.create_first(session)
    app.open()
    return app


def seed(app: Any, keys: list[tuple[str, dict[str, Any]]]) -> list[int]:
    """Employees and connections with sealed credentials, in bulk (explicit ids: the AAD binds them)."""
    from sqlalchemy import func as sqlfunc
    from sqlalchemy import insert, select

    from appliance.services.onboarding import fingerprint
    from appliance.store.models import Connection, Employee

    with app.store.read() as session:
        start = int(session.execute(select(sqlfunc.coalesce(sqlfunc.max(Connection.id), 0))).scalar_one()) + 1
    sealer = app.keys.sealer
    fp_key = app.keys.derive("fingerprint")
    now = dt.datetime.now(dt.UTC)
    employees: list[dict[str, Any]] = []
    connections: list[dict[str, Any]] = []
    for offset, (venue, creds) in enumerate(keys):
        row_id = start + offset
        employees.append({"id": row_id, "name": f"Bench {row_id}", "email": f"bench{row_id}@example.test",
                          "department": "", "status": "active"})
        row: dict[str, Any] = {
            "id": row_id, "employee_id": row_id, "kind": "prediction" if venue == "kalshi" else "exchange",
            "venue": venue, "label": venue, "status": "active", "status_reason": "", "address": "",
            "key_fingerprint": fingerprint(fp_key, creds["api_key"]), "scope_verified": True,
            "scope": {"read": True, "trade": False, "transfer": False, "withdraw": False, "verified": True},
            "scope_checked_at": now, "next_poll_at": now + dt.timedelta(days=1), "consecutive_failures": 0,
            "created_at": now,
            "updated_at": now}
        for field, column in (("api_key", "api_key_sealed"), ("api_secret", "api_secret_sealed"),
                              ("passphrase", "passphrase_sealed")):
            value = creds.get(field)
            row[column] = sealer.seal(value, table="connections", column=column, row_id=row_id) if value else None
        connections.append(row)
    for chunk in range(0, len(connections), 2000):
        with app.store.unit_of_work() as session:
            session.execute(insert(Employee.__table__), employees[chunk:chunk + 2000])
            session.execute(insert(Connection.__table__), connections[chunk:chunk + 2000])  # type: ignore[arg-type]
    if app.store.dialect == "postgresql":  # explicit ids: move the sequences past them
        with app.store.unit_of_work() as session:
            from sqlalchemy import text

            session.execute(text("SELECT setval(pg_get_serial_sequence('employees', 'id'), "
                                 "(SELECT max(id) FROM employees))"))
            session.execute(text("SELECT setval(pg_get_serial_sequence('connections', 'id'), "
                                 "(SELECT max(id) FROM connections))"))
    return list(range(start, start + len(keys)))


def make_due(app: Any, ids: list[int] | None = None) -> None:
    from sqlalchemy import update

    from appliance.store.models import Connection

    with app.store.unit_of_work() as session:
        stmt = update(Connection)
        if ids is not None:
            stmt = stmt.where(Connection.id.in_(ids))
        session.execute(stmt.values(next_poll_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
                                    lease_owner=None, lease_expires_at=None))


def run_cycle_for(app: Any, ids: list[int], passes: int = 2) -> dict[str, Any]:
    """Sync exactly these connections (no one else is due): a first sync, then a second pass so that
    every cursor is in its steady incremental state; a connection that fails is retried (3 times).
    Returns the failures left."""
    from appliance.services.sync import run_cycle

    failures: dict[str, Any] = {}
    for _ in range(passes):
        pending = list(ids)
        for _attempt in range(3):
            make_due(app, pending)
            result = run_cycle(app)
            pending = [o.connection_id for o in result.failed]
            failures = result.failures_by_class()
            if not pending:
                break
    return failures


def clone_state(app: Any, template_of: dict[int, int]) -> None:
    """Give each connection a copy of its template connection's sync state (cursors, coverage, current
    balances, transactions) and health, in bulk."""
    from sqlalchemy import insert, select, update

    from appliance.store.models import BalanceSnapshot, Connection, CoverageInterval, SyncCursor, Transaction

    def rows_of(model: Any, cid: int, *where: Any) -> list[dict[str, Any]]:
        with app.store.read() as session:
            table = model.__table__
            return [dict(r._mapping) for r in session.execute(select(table).where(table.c.connection_id == cid,
                                                                                  *where))]

    sources = set(template_of.values())
    state = {t: {
        SyncCursor: rows_of(SyncCursor, t),
        CoverageInterval: rows_of(CoverageInterval, t),
        BalanceSnapshot: rows_of(BalanceSnapshot, t, BalanceSnapshot.__table__.c.valid_to.is_(None)),
        Transaction: rows_of(Transaction, t),
    } for t in sources}
    with app.store.read() as session:
        health = {cid: (status, success, next_at) for cid, status, success, next_at in session.execute(select(
            Connection.id, Connection.status, Connection.last_success_at, Connection.next_poll_at).where(
            Connection.id.in_(sources)))}
    for model in (SyncCursor, CoverageInterval, BalanceSnapshot, Transaction):
        batch: list[dict[str, Any]] = []
        for cid, template in template_of.items():
            for row in state[template][model]:
                copy = dict(row, connection_id=cid)
                copy.pop("id", None)
                batch.append(copy)
            if len(batch) >= 5000:
                with app.store.unit_of_work() as session:
                    session.execute(insert(model.__table__), batch)
                batch = []
        if batch:
            with app.store.unit_of_work() as session:
                session.execute(insert(model.__table__), batch)
    by_template: dict[int, list[int]] = {}
    for cid, template in template_of.items():
        by_template.setdefault(template, []).append(cid)
    with app.store.unit_of_work() as session:
        for template, cids in by_template.items():
            status, success, next_at = health[template]
            session.execute(update(Connection).where(Connection.id.in_(cids)).values(
                status=status, last_success_at=success, last_attempt_at=success, next_poll_at=next_at))


@dataclass
class CycleFigures:
    label: str
    syncs: int
    failed: int
    seconds: float
    system_share: float
    cpu_ms_per_sync: float
    sim_cpu_ms_per_sync: float
    rss_before: float
    rss_peak: float
    rss_after: float
    requests: int
    failures: dict[str, Any]


def measured_cycle(app: Any, sim: Sim, label: str, *, only: int | None = None) -> CycleFigures:
    from appliance.services.sync import run_cycle

    sim.control("DELETE", "requests")
    before = rss_mib()
    cpu0, sim0, times0 = time.process_time(), sim.cpu_seconds(), os.times()
    with RssSampler() as sampler:
        started = time.perf_counter()
        result = run_cycle(app, only=only, force=only is not None)
        seconds = time.perf_counter() - started
    cpu, sim_cpu, times1 = time.process_time() - cpu0, sim.cpu_seconds() - sim0, os.times()
    system_share = (times1.system - times0.system) / max(cpu, 1e-9)
    after = rss_mib()  # before the request log is fetched: that copy is the benchmark's, not the engine's
    log = sim.control("GET", "requests")["requests"]
    requests = len(log)
    syncs = max(1, len(result.outcomes))
    per_venue: dict[str, int] = {}
    for entry in log:
        per_venue[entry["venue"]] = per_venue.get(entry["venue"], 0) + 1
    synced: dict[str, int] = {}
    for o in result.outcomes:
        synced[o.venue] = synced.get(o.venue, 0) + 1
    if only is None:
        note("  venue requests per sync: " + ", ".join(
            f"{v} {n / max(synced.get(v, 1), 1):.1f}" for v, n in sorted(per_venue.items())))
    return CycleFigures(label, len(result.outcomes), len(result.failed), seconds, system_share, cpu * 1000 / syncs,
                        sim_cpu * 1000 / syncs, before, max(sampler.peak, before), after, requests,
                        result.failures_by_class())


def run_database(kind: str, args: argparse.Namespace, sim_app: Any, keys: list[tuple[str, dict[str, Any]]],
                 base: Path) -> list[CycleFigures]:
    from bench.common import database

    url: str
    found, cluster, why = database(kind, base, "vigatra.db")
    if found is None:
        note(f"PostgreSQL unavailable: {why}")
        return []
    url = found
    sim = start_sim(sim_app, args.sim_threads)
    app = make_appliance(url, base / "data", sim, tuple(args.venues), args.workers, args.venue_rps,
                         pool_size=max(10, args.workers))
    try:
        note(f"[{kind}] seeding {len(keys):,} connections ...")
        started = time.perf_counter()
        ids = seed(app, keys)
        templates: dict[str, int] = {}  # simulator account id -> the connection synced for real
        for cid, (_venue, creds) in zip(ids, keys, strict=True):
            templates.setdefault(creds["account"], cid)
        note(f"[{kind}]   {time.perf_counter() - started:.1f} s; first (full) sync of {len(templates)} template "
             "connections without latency ...")
        started = time.perf_counter()
        first = run_cycle_for(app, list(templates.values()))
        note(f"[{kind}]   {time.perf_counter() - started:.1f} s, {len(first)} failed {first or ''}")
        started = time.perf_counter()
        clone_state(app, {cid: templates[creds["account"]] for cid, (_v, creds) in zip(ids, keys, strict=True)
                          if templates[creds["account"]] != cid})
        note(f"[{kind}]   cloned their state to the other connections in {time.perf_counter() - started:.1f} s")
        by_id = dict(zip(ids, keys, strict=True))
        template_ids = list(templates.values())
        wanted = round(len(template_ids) * args.active)  # exactly --active of them, spread across venues
        active = [template_ids[i * len(template_ids) // wanted] for i in range(wanted)] if wanted else []
        affected = sum(1 for _venue, creds in keys if templates[creds["account"]] in set(active))
        note(f"[{kind}] a new trade on {len(active)} accounts ({affected:,} connections); latency "
             f"{args.latency_ms} ms; measured cycle ...")
        for cid in active:
            venue, creds = by_id[cid]
            sim.control("POST", f"{venue}/keys/{creds['api_key']}/trades", {"count": 1})
        for venue in args.venues:
            sim.control("POST", f"{venue}/faults", {"latency_ms": args.latency_ms})
        make_due(app)
        figures = [measured_cycle(app, sim, f"{kind}: {len(ids):,} connections, one incremental cycle")]
        note(f"[{kind}]   {figures[0].seconds:.1f} s, {figures[0].failed} failed {figures[0].failures or ''}")
        floor_runs = []
        for cid in ids[: args.floor_samples]:
            make_due(app, [cid])
            floor_runs.append(measured_cycle(app, sim, "one", only=cid))
        mid = statistics.median(r.seconds for r in floor_runs)
        floor = min(floor_runs, key=lambda r: abs(r.seconds - mid))
        floor.label = f"{kind}: one account alone (median of {len(floor_runs)}, venues in turn)"
        floor.cpu_ms_per_sync = statistics.median(r.cpu_ms_per_sync for r in floor_runs)
        floor.sim_cpu_ms_per_sync = statistics.median(r.sim_cpu_ms_per_sync for r in floor_runs)
        floor.requests = round(statistics.mean(r.requests for r in floor_runs))
        figures.append(floor)
        return figures
    finally:
        app.close()
        sim.stop()
        if cluster is not None:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--venues", nargs="+", default=list(EXCHANGES))
    parser.add_argument("--workers", type=int, default=32, help="poller.workers")
    parser.add_argument("--sim-threads", type=int, default=96)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--venue-rps", type=float, default=1000)
    parser.add_argument("--active", type=float, default=0.1, help="fraction of accounts with a new trade")
    parser.add_argument("--floor-samples", type=int, default=18)
    parser.add_argument("--accounts-per-venue", type=int, default=10,
                        help="distinct simulator accounts per venue (keys are bound to them in turn)")
    args = parser.parse_args()
    os.environ[KEK_VAR] = base64.b64encode(secrets.token_bytes(32)).decode()

    from appliance.sim.core import SimState
    from appliance.sim.server import SimApp

    rows: list[CycleFigures] = []
    for kind in args.databases:
        note(f"minting {args.connections:,} keys in the simulator ...")
        sim_app = SimApp(SimState(seed=8))
        keys = []
        accounts: dict[str, list[Any]] = {v: [] for v in args.venues}
        for i in range(args.connections):
            venue = args.venues[i % len(args.venues)]
            venue_sim = sim_app.state.venues[venue]
            shared = accounts[venue]
            key = venue_sim.create_key(["read"], history=dict(HISTORY) if len(shared) < args.accounts_per_venue
                                       else {})
            if len(shared) < args.accounts_per_venue:
                shared.append(key.account)
            else:
                key.account = shared[(i // len(args.venues)) % len(shared)]
            keys.append((venue, dict(key.credentials(), account=key.account.id)))
        with tempfile.TemporaryDirectory(prefix="vigatra-bench-sync-") as tmp:
            rows.extend(run_database(kind, args, sim_app, keys, Path(tmp)))

    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"Machine: {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}; poller.workers={args.workers}, "
          f"simulator threads={args.sim_threads}, latency {args.latency_ms} ms/request, venues: "
          f"{', '.join(args.venues)}; {args.active:.0%} of accounts with a new trade\n")
    print("| run | syncs | failed | total | syncs/s | CPU ms/sync (appliance; kernel share) | CPU ms/sync (simulator) "
          "| venue requests/sync | RSS before → peak → after (MiB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(f"| {r.label} | {r.syncs:,} | {r.failed} | {r.seconds:.1f} s | {r.syncs / r.seconds:,.1f} "
              f"| {r.cpu_ms_per_sync:.1f} ({r.system_share:.0%}) | {r.sim_cpu_ms_per_sync:.1f} "
              f"| {r.requests / max(r.syncs, 1):.1f} "
              f"| {r.rss_before:.0f} → {r.rss_peak:.0f} → {r.rss_after:.0f} |")
    print(f"\nPeak RSS of the benchmark process over its whole life: {peak_self:.0f} MiB")


if __name__ == "__main__":
    main()
