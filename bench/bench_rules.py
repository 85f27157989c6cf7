"""Benchmark of the conduct rules (issue 19).

Targets: evaluating all rules over 10,000 employees x 200 transactions after a list change in under
60 s on SQLite and on PostgreSQL; the incremental evaluation after a sync adds under 10 % to the
sync's CPU.

1. ``full``: a fresh, migrated database (SQLite file, or a database on a throwaway PostgreSQL cluster
   from tests/support/pg.py) with ``--employees`` employees, one connection each (80 % exchanges, 10 %
   wallets, 10 % prediction accounts), ``--transactions`` transactions per connection (buys, sells,
   deposits and withdrawals over two years, 20 assets, quotes in USD and USDT, counterparty addresses
   on transfers), balance observations and prediction positions, inserted in bulk. The rules: a
   restricted list of 40 entries (assets, a venue, keywords, a category, market ids) with its
   restricted rule, a watch list with its watch rule, a 30-day holding period, a blackout for one
   department, a threshold over trades, transfers, positions and holdings, and the undisclosed-account
   rule, created as the API and the pages create them: each list and rule judged over the whole history at
   once (reported: "rules set up"). Then, with what populating wrote on disk (``at_rest``), one entry is
   added to the restricted list (the list change) and every rule is evaluated over the whole history in
   one unit of work, committed (what `vigatra rules evaluate` does). Reported: the seconds of that
   evaluation, the alerts it raised, and a second evaluation (nothing new: the cost of judging alone).
   ``--scenario first-evaluation``: the rules are written without being judged, so the measured evaluation
   is also every rule's first (the holding period's, the threshold's with its records that cannot be
   valued, ...): what `vigatra rules evaluate` costs when nothing was judged before.
2. ``sync``: the real sync engine against the simulators (this process), ``--sync-connections`` Kraken
   and Binance keys with ``--sync-history`` trades each and the same rules; after a first sync (not
   measured) every account gets two new trades and one cycle runs. Reported: the CPU the syncs spent
   (their threads' CPU, ``SyncOutcome.cpu_ms``) without the evaluation, and the CPU the evaluation of
   the stored records added (``SyncOutcome.rules_cpu_ms``), as a ratio.

Usage: .venv/bin/python bench/bench_rules.py [--part full sync] [--databases sqlite postgresql]
       [--employees 10000] [--transactions 200] [--scenario list-change|first-evaluation]
       [--sync-connections 100] [--sync-history 50]
Prints a markdown table to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import os
import random
import secrets
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KEK_VAR = "VIGATRA_BENCH_RULES_KEK"
ASSETS = ("BTC", "ETH", "SOL", "XRP", "ADA", "DOGE", "DOT", "AVAX", "LINK", "MATIC", "UNI", "ATOM", "LTC", "BCH",
          "XLM", "ALGO", "FIL", "NEAR", "APT", "ARB")
EXCHANGES = ("kraken", "binance", "coinbase", "okx", "bybit")
DEPARTMENTS = ("Trading", "Research", "Operations", "Sales", "Engineering")
TITLES = ("Acme Corp Q4 2026 earnings beat?", "Will the Fed cut rates in December?", "Globex merger approved?",
          "Will BTC close above 150k this year?", "Initech layoffs announced by March?")


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def appliance_on(url: str, data_dir: Path, **extra: Any) -> Any:
    from appliance.services.context import Appliance
    from appliance.settings import settings_from_mapping
    from appliance.store.migrate import upgrade
    from appliance.store.session import make_engine

    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    raw = {"data_dir": str(data_dir), "appliance_id": "bench-rules", "database": {"url": url},
           "keys": {"provider": "env", "env_var": KEK_VAR}, "poller": {"enabled": False}, **extra}
    app = Appliance(settings_from_mapping(raw, env={}))
    with app.store.unit_of_work() as session:
        app.keys.create_first(session)
    app.open()
    return app


def populate(app: Any, employees: int, per_connection: int, seed: int = 7) -> int:
    """Bulk rows: employees, connections, transactions, balance observations, prediction positions."""
    from sqlalchemy import insert

    from appliance.store.models import BalanceSnapshot, Connection, Employee, PredictionPosition, Transaction

    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = now - dt.timedelta(days=730)
    engine = app.store.engine
    total = 0
    batch_employees = 1000
    for first in range(1, employees + 1, batch_employees):
        ids = range(first, min(first + batch_employees, employees + 1))
        people, conns, txs, snaps, positions = [], [], [], [], []
        for i in ids:
            people.append({"id": i, "name": f"Employee {i}", "email": f"e{i}@example.test",
                           "department": DEPARTMENTS[i % len(DEPARTMENTS)], "status": "active", "created_at": now})
            roll = i % 10
            kind, venue, address = "exchange", EXCHANGES[i % len(EXCHANGES)], ""
            if roll == 8:
                kind, venue, address = "wallet", "ethereum", "0x" + f"{i:040x}"
            elif roll == 9:
                kind, venue, address = "prediction", "polymarket", "0x" + f"{i + 10**9:040x}"
            conns.append({"id": i, "employee_id": i, "kind": kind, "venue": venue, "label": venue, "status": "active",
                          "status_reason": "", "address": address, "key_fingerprint": "", "scope_verified": True,
                          "consecutive_failures": 0, "created_at": now, "updated_at": now})
            times = sorted(start + dt.timedelta(seconds=rng.randrange(730 * 86400)) for _ in range(per_connection))
            for n, when in enumerate(times):
                asset = ASSETS[rng.randrange(len(ASSETS))] if kind != "prediction" else f"market-{n % 5}:Yes"
                tx_kind = ("buy", "sell", "buy", "sell", "deposit", "withdrawal")[rng.randrange(6)]
                amount = Decimal(rng.randrange(1, 10**6)) / 1000
                quote = "USD" if rng.random() < 0.5 else "USDT"
                trade = tx_kind in ("buy", "sell")
                raw = None
                if not trade:
                    other = "0x" + secrets.token_hex(20) if rng.random() < 0.3 else address or "0x" + f"{i:040x}"
                    raw = {"address": other} if tx_kind == "withdrawal" else {"from": other}
                if kind == "prediction":
                    raw = {"title": TITLES[n % len(TITLES)]}
                txs.append({"connection_id": i, "stream": "trades" if trade else "transfers",
                            "venue_tx_id": f"{i}-{n}", "kind": tx_kind, "occurred_at": when, "asset": asset,
                            "amount": amount, "market": f"{asset}/{quote}" if trade and kind != "prediction" else
                            (f"0xmarket{n % 5}" if kind == "prediction" else ""),
                            "quote_asset": quote if trade else None,
                            "quote_amount": (amount * rng.randrange(1, 60000)) if trade else None,
                            "provenance": "api", "orphaned": False, "raw": raw, "created_at": now})
            for asset in rng.sample(ASSETS, 3):
                snaps.append({"connection_id": i, "asset": asset, "account": "",
                              "amount": Decimal(rng.randrange(1, 10**5)), "valid_from": start,
                              "observed_until": now, "provenance": "api"})
            if kind == "prediction":
                for n in range(3):
                    positions.append({"connection_id": i, "market_id": f"0xmarket{n}", "market_title": TITLES[n],
                                      "category": "Business" if n == 0 else "Politics", "outcome": "Yes",
                                      "size": Decimal(rng.randrange(1, 5000)), "avg_price": Decimal("0.45"),
                                      "current_value": None, "valid_from": start + dt.timedelta(days=n),
                                      "observed_until": now})
        with engine.begin() as conn:
            conn.execute(insert(Employee), people)
            conn.execute(insert(Connection), conns)
            conn.execute(insert(Transaction), txs)
            conn.execute(insert(BalanceSnapshot), snaps)
            if positions:
                conn.execute(insert(PredictionPosition), positions)
        total += len(txs)
        note(f"  populated {ids[-1]} employees, {total} transactions")
    return total


def configure_rules(app: Any, *, evaluated: bool = True) -> int:
    """The rules of the benchmark; returns the restricted list's id. ``evaluated``: created as the API and
    the pages create them, each list and rule judged over the whole history at once; else written without
    that, so the next evaluation is every rule's first."""
    from appliance.rbac.actors import system_actor
    from appliance.services import conduct
    from appliance.services.rules import catalogue, lists

    actor = system_actor("bench")
    now = dt.datetime.now(dt.UTC)

    def ago(days: int) -> str:
        return (now - dt.timedelta(days=days)).date().isoformat()

    entries: list[dict[str, Any]] = [{"type": "asset", "value": f"TOKEN{n}"} for n in range(30)]
    entries += [{"type": "asset", "value": "DOGE", "effective_from": ago(90)},
                {"type": "venue", "value": "okx", "effective_from": ago(30)},
                {"type": "market_text", "value": "Globex"}, {"type": "market_text", "value": "Initech layoffs"},
                {"type": "market_category", "value": "Business"}, {"type": "market_id", "value": "0xmarket4"},
                {"type": "asset", "value": "ethereum:0x" + "11" * 20}, {"type": "market_text", "value": "Hooli"},
                {"type": "asset", "value": "ARB", "effective_from": ago(10)},
                {"type": "asset", "value": "PEPE"}]
    rules: list[dict[str, Any]] = [
        {"name": "Hold 30 days", "kind": "holding_period", "params": {"days": 30}},
        {"name": "Q3 blackout", "kind": "blackout", "applies_to": {"departments": ["Research"]},
         "params": {"start": (now - dt.timedelta(days=200)).date().isoformat(),
                    "end": (now - dt.timedelta(days=170)).date().isoformat()}},
        {"name": "Large", "kind": "threshold", "params": {"value": "50000000"}},
        {"name": "Undisclosed", "kind": "new_account", "params": {}}]
    with app.store.unit_of_work() as session:
        restricted, _rules, _r = conduct.create_list(session, app, actor, name="Restricted", kind="restricted",
                                                     entries=entries if evaluated else [])
        if not evaluated:
            lists.add_entries(session, actor, restricted.id, entries)
        conduct.create_list(session, app, actor, name="Watch", kind="watch", entries=[
            {"type": "asset", "value": "LINK"}, {"type": "market_text", "value": "Fed"}], watch_rule=True)
        for rule in rules:
            if evaluated:
                conduct.create_rule(session, app, actor, **rule)
            else:
                catalogue.create(session, actor, base_currency="USD", **rule)
        return int(restricted.id)


def full(database: str, url: str, base: Path, employees: int, per_connection: int, workers: int = 0,
         first_evaluation: bool = False) -> dict[str, Any]:
    from sqlalchemy import func, select

    from appliance.rbac.actors import system_actor
    from appliance.services import conduct
    from appliance.services.rules import lists
    from appliance.store.models import Alert

    app = appliance_on(url, base / f"data-{database}", rules={"workers": workers})
    try:
        started = time.monotonic()
        rows = populate(app, employees, per_connection)
        note(f"{database}: {rows} transactions in {time.monotonic() - started:.0f} s")
        began = time.monotonic()
        list_id = configure_rules(app, evaluated=not first_evaluation)
        setup = time.monotonic() - began
        note(f"{database}: rules set up in {setup:.1f} s")
        at_rest(app)
        timings = []
        raised = []
        for attempt in range(2):
            began = time.monotonic()
            cpu = _cpu()
            with app.store.unit_of_work() as session:
                if attempt == 0:  # the list change
                    lists.add_entries(session, system_actor("bench"), list_id, [{"type": "asset", "value": "SOL"}])
                result = conduct.reevaluate(session, app)
            timings.append((time.monotonic() - began, _cpu() - cpu))
            raised.append(len(result.alert_ids))
            note(f"{database}: evaluation {attempt + 1}: {timings[-1][0]:.1f} s, {raised[-1]} alerts")
        with app.store.read() as session:
            alerts = int(session.execute(select(func.count()).select_from(Alert)).scalar_one())
        return {"database": database, "employees": employees, "transactions": rows, "setup": setup,
                "seconds": timings[0][0],
                "cpu": timings[0][1], "alerts": raised[0], "again_seconds": timings[1][0], "again_alerts": raised[1],
                "stored_alerts": alerts}
    finally:
        app.close()


def at_rest(app: Any) -> None:
    """Before the measured evaluation: what populating wrote is on disk (a PostgreSQL checkpoint, the
    page cache written back), as on an appliance where the list change comes later, not while gigabytes
    are still being written (that writing cost the measured runs 10-20 s of CPU at random)."""
    from sqlalchemy import text

    if app.store.engine.dialect.name == "postgresql":
        with app.store.engine.connect() as connection:
            connection.execute(text("CHECKPOINT"))
    os.sync()


def _cpu() -> float:
    """CPU seconds of this process and of its ended child processes (the rules' worker processes)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def sync_part(database: str, url: str, base: Path, connections: int, history: int, active: float
              ) -> dict[str, Any]:
    from appliance.services.rules import lists
    from appliance.services.sync import run_cycle
    from appliance.settings import VENUE_IDS
    from tests.support.sim import start_sim

    sim = start_sim(seed=11)
    try:
        venues = {v: {"base_url": sim.base_url(v), "requests_per_second": 1000,
                      "unverified_policy": "accept_unverified"} for v in VENUE_IDS}
        app = appliance_on(url, base / f"sync-{database}", venues=venues, poller={"enabled": False, "workers": 8})
        try:
            keys = []
            for n in range(connections):
                venue = ("kraken", "binance")[n % 2]
                keys.append((venue, sim.create_key(venue, ["read"], history={"trades": history, "deposits": 5,
                                                                             "withdrawals": 5})))
            ids = [onboard(app, venue, key) for venue, key in keys]
            list_id = configure_rules(app)
            with app.store.unit_of_work() as session:
                from appliance.rbac.actors import system_actor

                lists.add_entries(session, system_actor("bench"), list_id, [{"type": "asset", "value": "SOL"}])
            note(f"{database}: first sync of {connections} connections")
            first = run_cycle(app, force=True)
            assert not first.failed, first.lines()[:5]
            for venue, key in keys[:max(1, round(len(keys) * active))]:
                sim.control("POST", f"{venue}/keys/{key['api_key']}/trades", {"count": 2})
            began = time.monotonic()
            result = run_cycle(app, force=True)
            wall = time.monotonic() - began
            assert not result.failed, result.lines()[:5]
            rules_cpu = sum(o.rules_cpu_ms for o in result.outcomes)
            total_cpu = sum(o.cpu_ms for o in result.outcomes)
            del ids
            return {"database": database, "connections": connections, "history": history, "wall": wall,
                    "active": active,
                    "sync_cpu_ms": total_cpu - rules_cpu, "rules_cpu_ms": rules_cpu,
                    "alerts": sum(o.alerts for o in result.outcomes),
                    "records": sum(o.records for o in result.outcomes)}
        finally:
            app.close()
    finally:
        sim.stop()


def onboard(app: Any, venue: str, key: dict[str, Any]) -> int:
    from appliance.rbac.actors import system_actor
    from appliance.services import employees, onboarding
    from appliance.venues.base import Credentials

    with app.store.unit_of_work() as session:
        person = employees.create(session, name=f"S {key['api_key'][:8]}", email=f"{secrets.token_hex(6)}@example.test",
                                  department="Research")
        row, _token = onboarding.create_link(session, system_actor("bench"), app.settings, person.id)
        link = onboarding.Link(row.id, row.employee_id, row.purpose, False, row.expires_at)
    adapter = app.venues.get(venue)
    creds = Credentials(key["api_key"], key["api_secret"], key.get("passphrase") or "")
    outcome = onboarding.probe(adapter, creds, "accept_unverified")
    with app.store.unit_of_work() as session:
        return int(onboarding.record_key_submission(session, app.keys, link, adapter, creds, outcome,
                                                    app.keys.derive("fingerprint")).id)


def database_url(database: str, base: Path, clusters: dict[str, Any]) -> str:
    if database == "sqlite":
        return f"sqlite:///{base / f'rules-{secrets.token_hex(3)}.db'}"
    if "pg" not in clusters:
        from tests.support.pg import start_cluster

        cluster, why = start_cluster(base / "pg")
        if cluster is None:
            raise SystemExit(f"no PostgreSQL: {why}")
        clusters["pg"] = cluster
    return str(clusters["pg"].fresh_database(migrated=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", nargs="+", choices=["full", "sync"], default=["full", "sync"])
    parser.add_argument("--databases", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"])
    parser.add_argument("--employees", type=int, default=10000)
    parser.add_argument("--transactions", type=int, default=200)
    parser.add_argument("--sync-connections", type=int, default=100)
    parser.add_argument("--sync-history", type=int, default=50)
    parser.add_argument("--scenario", choices=["list-change", "first-evaluation"], default="list-change",
                        help="list-change: the rules were created as the API creates them (each judged at once), "
                             "then a list changes; first-evaluation: the rules never judged before, so the "
                             "measured evaluation is every rule's first")
    parser.add_argument("--rules-workers", type=int, default=0,
                        help="rules.workers for --part full (0: one per core, 1: in this process)")
    parser.add_argument("--active", type=float, nargs="+", default=[0.1, 1.0],
                        help="fractions of the accounts with new trades in the measured cycle")
    args = parser.parse_args()
    os.environ[KEK_VAR] = base64.b64encode(secrets.token_bytes(32)).decode()
    clusters: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        base = Path(tmp)
        try:
            if "full" in args.part:
                print(f"rules.workers: {args.rules_workers}, scenario: {args.scenario}\n\n"
                      "| database | employees | transactions | rules set up | evaluation after the list change | CPU | "
                      "alerts | again (nothing new) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
                for database in args.databases:
                    r = full(database, database_url(database, base, clusters), base, args.employees, args.transactions,
                             args.rules_workers, first_evaluation=args.scenario == "first-evaluation")
                    print(f"| {database} | {r['employees']:,} | {r['transactions']:,} | {r['setup']:.1f} s | "
                          f"{r['seconds']:.1f} s | {r['cpu']:.1f} s | {r['alerts']:,} | "
                          f"{r['again_seconds']:.1f} s, {r['again_alerts']} |", flush=True)
            if "sync" in args.part:
                print("\n| database | connections | history each | with new trades | records stored | sync CPU | "
                      "rules CPU | ratio | alerts |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
                for database in args.databases:
                    for active in args.active:
                        r = sync_part(database, database_url(database, base, clusters), base, args.sync_connections,
                                      args.sync_history, active)
                        ratio = r["rules_cpu_ms"] / r["sync_cpu_ms"] if r["sync_cpu_ms"] else 0.0
                        print(f"| {database} | {r['connections']} | {r['history']} | {active:.0%} | {r['records']} | "
                              f"{r['sync_cpu_ms']:.0f} ms | {r['rules_cpu_ms']:.0f} ms | {ratio:.1%} | "
                              f"{r['alerts']} |", flush=True)
        finally:
            if "pg" in clusters:
                clusters["pg"].stop()


if __name__ == "__main__":
    main()
