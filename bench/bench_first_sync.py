"""Benchmark of an account's first full sync, per venue: a two-year account (its trades, deposits and withdrawals
spread over the last 730 days), against the simulators with 50 ms injected latency on every request, with the
venue budgets as the appliance is deployed (no ``requests_per_second`` set: the venues' documented limits now;
5 requests a second per venue before issue 23).

Reported per venue:
- one account alone: the wall time of its first sync (``run_cycle`` of that one connection), the requests it
  made, and how far back its first poll read each stream (a stream whose documented budget ran out mid-walk goes
  on at the next poll: "deferred");
- ``--accounts`` accounts in one polling cycle (``poller.workers``): accounts/s and requests per account.

"Before" is this same script run on the code before issue 23 (``--code`` a checkout of it: the script uses only
the appliance's public pieces both versions share). The simulators come from the code under test.

Usage: .venv/bin/python bench/bench_first_sync.py [--venues binance bybit ...] [--accounts 5]
       [--latency-ms 50] [--code PATH] [--database sqlite|postgresql]
Prints a markdown table to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KEK_VAR = "VIGATRA_BENCH_FIRST_SYNC_KEK"
EXCHANGES = ("binance", "binanceus", "bybit", "coinbase", "gemini", "kraken", "kucoin", "okx", "bitstamp")
DAY_MS = 86_400_000
HISTORY = {"trades": 40, "deposits": 8, "withdrawals": 4}


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def two_year_account(sim_app: Any, venue: str) -> dict[str, Any]:
    """A key whose account's history is spread over the last two years."""
    venue_sim = sim_app.state.venues[venue]
    key = venue_sim.create_key(["read"], history={"trades": 0, "deposits": 0, "withdrawals": 0})
    start = int(time.time() * 1000) - 730 * DAY_MS
    venue_sim.add_deposits(key.account, HISTORY["deposits"], start_ms=start)
    venue_sim.add_trades(key.account, HISTORY["trades"], start_ms=start + DAY_MS)
    venue_sim.add_withdrawals(key.account, HISTORY["withdrawals"], start_ms=start + 2 * DAY_MS)
    return dict(key.credentials())


def make_appliance(url: str, data_dir: Path, sim_url: str, venues: tuple[str, ...], workers: int) -> Any:
    from appliance.services.context import Appliance
    from appliance.settings import settings_from_mapping
    from appliance.store.migrate import upgrade
    from appliance.store.session import make_engine

    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    raw = {
        "data_dir": str(data_dir), "appliance_id": "bench-first-sync", "database": {"url": url},
        "keys": {"provider": "env", "env_var": KEK_VAR},
        "poller": {"enabled": False, "workers": workers, "lease_seconds": 900, "max_pages_per_sync": 1000},
        # No requests_per_second: each venue's default budget, as deployed.
        "venues": {v: {"base_url": f"{sim_url}/{v}", "unverified_policy": "accept_unverified"} for v in venues},
    }
    app = Appliance(settings_from_mapping(raw, env={}))
    with app.store.unit_of_work() as session:
        app.keys.create_first(session)
    app.open()
    return app


def seed(app: Any, venue: str, keys: list[dict[str, Any]]) -> list[int]:
    from sqlalchemy import func, insert, select

    from appliance.services.onboarding import fingerprint
    from appliance.store.models import Connection, Employee

    with app.store.read() as session:
        start = int(session.execute(select(func.coalesce(func.max(Connection.id), 0))).scalar_one()) + 1
    now = dt.datetime.now(dt.UTC)
    fp_key = app.keys.derive("fingerprint")
    ids = []
    with app.store.unit_of_work() as session:
        for offset, creds in enumerate(keys):
            row_id = start + offset
            session.execute(insert(Employee.__table__), [{"id": row_id, "name": f"Bench {row_id}",
                                                          "email": f"b{row_id}@example.test", "department": "",
                                                          "status": "active"}])
            row: dict[str, Any] = {
                "id": row_id, "employee_id": row_id, "kind": "exchange", "venue": venue, "label": venue,
                "status": "active", "status_reason": "", "address": "",
                "key_fingerprint": fingerprint(fp_key, creds["api_key"]), "scope_verified": True,
                "scope": {"read": True, "trade": False, "transfer": False, "withdraw": False, "verified": True},
                "scope_checked_at": now, "next_poll_at": now + dt.timedelta(days=1), "consecutive_failures": 0,
                "created_at": now, "updated_at": now}
            for field, column in (("api_key", "api_key_sealed"), ("api_secret", "api_secret_sealed"),
                                  ("passphrase", "passphrase_sealed")):
                value = creds.get(field)
                row[column] = (app.keys.sealer.seal(value, table="connections", column=column, row_id=row_id)
                               if value else None)
            session.execute(insert(Connection.__table__), [row])  # type: ignore[arg-type]
            ids.append(row_id)
    return ids


def reach(app: Any, connection_id: int) -> tuple[str, bool]:
    """How far back the first poll's coverage reaches (the oldest ``complete`` start over the streams), and
    whether a walk was left to the next poll (a cursor still short of its floor)."""
    from sqlalchemy import select

    from appliance.store.models import CoverageInterval, SyncCursor

    with app.store.read() as session:
        starts = [row.start_at for row in session.execute(select(CoverageInterval).where(
            CoverageInterval.connection_id == connection_id, CoverageInterval.kind == "complete")).scalars()]
        cursors = [row.cursor or {} for row in session.execute(select(SyncCursor).where(
            SyncCursor.connection_id == connection_id)).scalars()]
    deferred = any("back" in c and "floor" in c and int(c["back"]) > int(c["floor"]) for c in cursors)
    oldest = min(starts).date().isoformat() if starts else "-"
    return oldest, deferred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venues", nargs="+", default=list(EXCHANGES))
    parser.add_argument("--accounts", type=int, default=5, help="accounts per venue for the cycle figure")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--code", type=Path, default=REPO, help="checkout whose appliance code is measured")
    args = parser.parse_args()
    sys.path.insert(0, str(args.code.resolve()))
    sys.path.insert(1, str(REPO))
    os.environ[KEK_VAR] = base64.b64encode(secrets.token_bytes(32)).decode()

    import requests

    from appliance.services.sync import run_cycle
    from appliance.sim.core import SimState
    from appliance.sim.server import SimApp
    from bench.bench_sync import start_sim

    sim_app = SimApp(SimState(seed=23))
    keys = {venue: [two_year_account(sim_app, venue) for _ in range(args.accounts + 1)] for venue in args.venues}
    rows = []
    with tempfile.TemporaryDirectory(prefix="vigatra-bench-first-sync-") as tmp:
        base = Path(tmp)
        cluster = None
        if args.database == "sqlite":
            url = f"sqlite:///{base / 'vigatra.db'}"
        else:
            from tests.support.pg import start_cluster

            cluster, why = start_cluster(base / "pg")
            if cluster is None:
                raise SystemExit(f"PostgreSQL unavailable: {why}")
            url = cluster.fresh_database(migrated=False)
        sim = start_sim(sim_app, 64)
        app = make_appliance(url, base / "data", sim.url, tuple(args.venues), args.workers)

        def requests_made() -> int:
            return len(requests.get(f"{sim.url}/_sim/requests", timeout=60).json()["requests"])

        try:
            for venue in args.venues:
                sim.control("POST", f"{venue}/faults", {"latency_ms": args.latency_ms})
                adapter = app.venues.get(venue)
                if hasattr(adapter, "markets"):
                    adapter.markets()  # loaded once per process: not part of an account's sync
                alone, *cycle_ids = seed(app, venue, keys[venue])
                sim.control("DELETE", "requests")
                note(f"[{venue}] one two-year account, first sync ...")
                started = time.perf_counter()
                outcome = run_cycle(app, only=alone, force=True).outcomes[0]
                alone_seconds = time.perf_counter() - started
                alone_requests = requests_made()
                oldest, deferred = reach(app, alone)
                note(f"[{venue}]   {alone_seconds:.1f} s, {alone_requests} requests; {len(cycle_ids)} in one cycle ...")
                sim.control("DELETE", "requests")
                from bench.bench_sync import make_due

                make_due(app, cycle_ids)
                started = time.perf_counter()
                result = run_cycle(app)
                cycle_seconds = time.perf_counter() - started
                cycle_requests = requests_made()
                rows.append((venue, alone_seconds, alone_requests, outcome.ok, oldest, deferred, len(cycle_ids),
                             cycle_seconds, cycle_requests, len(result.failed)))
                sim.control("DELETE", f"{venue}/faults")
        finally:
            app.close()
            sim.stop()
            if cluster is not None:
                cluster.stop()

    code = "this checkout" if args.code.resolve() == REPO else str(args.code)
    print(f"Code: {code}. Machine: {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}; {args.database}; "
          f"latency {args.latency_ms} ms/request; two-year accounts of {HISTORY['trades']} trades, "
          f"{HISTORY['deposits']} deposits, {HISTORY['withdrawals']} withdrawals; venue budgets as deployed; "
          f"poller.workers={args.workers}\n")
    print("| venue | first sync, one account | requests | ok | read back to | walk left to the next poll | "
          "accounts in one cycle | accounts/s | requests/account | failed |")
    print("| --- | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: |")
    for (venue, alone_s, alone_r, ok, oldest, deferred, n, cycle_s, cycle_r, failed) in rows:
        print(f"| {venue} | {alone_s:.1f} s | {alone_r} | {'yes' if ok else 'no'} | {oldest} | "
              f"{'yes' if deferred else 'no'} | {n} | {n / cycle_s:.2f} | {cycle_r / max(n, 1):.1f} | {failed} |")


if __name__ == "__main__":
    main()
