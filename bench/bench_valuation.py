"""Valuation at scale: the holdings of 10,000 employees (5 assets each) valued with a warm price cache, and
100,000 historical trades priced from cached candles.

Setup (not measured): a fresh database (SQLite file, and a throwaway PostgreSQL cluster from
tests/support/pg.py), the venue simulators in this process, 10,000 employees with one exchange connection
each, 5 open balances per employee drawn from 8 assets (one of which, ADA, no venue lists: those holdings are
unpriced, as they would be), and 100,000 trades spread over the last ``--days`` days. A first pricing run
against the simulators fills the caches (current prices, candle days); its time is printed as well.

Measured, each the median of ``--repeat`` runs:

- **holdings, warm cache**: every employee's holdings valued and totalled
  (``valuation.read.holdings_by_employee``: one query, Decimal arithmetic) — what a firm-wide report or
  dashboard asks; and the holdings CSV report's rows with their values (``reports.holdings_rows``).
- **current prices, warm cache**: the pricing job's current-price pass when every ticker is fresh (no fetch).
- **100,000 trades from cached candles**: the pricing job's transaction pass after every stored value is
  deleted: each trade priced from the close of the candle that contains it, read from the stored candles (the
  run asserts that no venue was asked), and the values written.

Usage: .venv/bin/python bench/bench_valuation.py [--employees 10000] [--assets 5] [--trades 100000]
       [--days 20] [--databases sqlite postgresql] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import database, print_table  # noqa: E402

ASSETS = ("BTC", "ETH", "SOL", "USDT", "USDC", "XRP", "BNB", "ADA")
TRADED = ("BTC", "ETH", "SOL", "XRP", "USDT")
AMOUNTS = (Decimal("0.015"), Decimal("1.2345"), Decimal("250"), Decimal("0.00042"), Decimal("12.5"))


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_appliance(url: str, data_dir: Path, sim: Any) -> Any:
    from appliance.settings import VENUE_IDS
    from appliance.store.migrate import upgrade
    from appliance.store.session import make_engine
    from tests.support.app import build

    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    venues = {v: {"base_url": sim.base_url(v), "requests_per_second": 1000} for v in VENUE_IDS}
    return build(url, data_dir, venues=venues, database={"url": url, "pool_size": 10},
                 valuation={"transactions_per_run": 10_000_000}).appliance


def seed(app: Any, employees: int, assets: int, trades: int, days: int) -> None:
    from sqlalchemy import insert, text

    from appliance.store.models import BalanceSnapshot, Connection, Employee, Transaction

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    people, links, balances = [], [], []
    for n in range(1, employees + 1):
        people.append({"id": n, "name": f"Bench {n}", "email": f"bench{n}@example.test", "department": "",
                       "status": "active", "created_at": now})
        links.append({"id": n, "employee_id": n, "kind": "exchange", "venue": "kraken", "label": "kraken",
                      "status": "active", "status_reason": "", "address": "", "key_fingerprint": "",
                      "scope_verified": True, "next_poll_at": now + dt.timedelta(days=30), "consecutive_failures": 0,
                      "created_at": now, "updated_at": now})
        for k in range(assets):
            asset = ASSETS[(n + k) % len(ASSETS)]
            balances.append({"connection_id": n, "asset": asset, "account": "spot",
                             "amount": AMOUNTS[(n * 7 + k) % len(AMOUNTS)], "valid_from": now,
                             "observed_until": now, "provenance": "api"})
    span = days * 86_400
    rows = []
    for i in range(trades):
        connection = i % employees + 1
        when = now - dt.timedelta(seconds=3600 + (i * 7919) % span)
        rows.append({"connection_id": connection, "stream": "trades", "venue_tx_id": f"t{i}", "kind": "buy",
                     "occurred_at": when, "asset": TRADED[i % len(TRADED)], "amount": AMOUNTS[i % len(AMOUNTS)],
                     "market": "", "provenance": "api", "orphaned": False, "created_at": now})
    with app.store.unit_of_work() as session:
        for start in range(0, len(people), 5000):
            session.execute(insert(Employee), people[start:start + 5000])
            session.execute(insert(Connection), links[start:start + 5000])
        for start in range(0, len(balances), 10000):
            session.execute(insert(BalanceSnapshot), balances[start:start + 10000])
        for start in range(0, len(rows), 10000):
            session.execute(insert(Transaction), rows[start:start + 10000])
        if app.store.dialect == "postgresql":  # explicit ids: move the sequences past them
            for table in ("employees", "connections"):
                session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                                     f"(SELECT max(id) FROM {table}))"))


CPU: dict[str, float] = {}  # run label -> this process's CPU seconds (median), shown beside the wall time


def timed(fn: Any, repeat: int, label: str = "") -> tuple[float, Any]:
    """Median wall time of ``repeat`` calls (and, under ``label``, the median CPU time of this process)."""
    times, cpu, result = [], [], None
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    if label:
        CPU[label] = statistics.median(cpu)
    return statistics.median(times), result


def cpu(label: str) -> str:
    return f"{CPU[label]:.2f} s" if label in CPU else ""


def run_database(kind: str, args: argparse.Namespace, base: Path) -> list[tuple[str, ...]]:
    from sqlalchemy import delete

    from appliance.rbac.actors import system_actor
    from appliance.services import reports
    from appliance.services.valuation import read
    from appliance.services.valuation.book import PriceBook
    from appliance.services.valuation.job import PricingResult, price_holdings, price_transactions, run_pricing
    from appliance.services.valuation.routes import Resolver
    from appliance.store.models import TransactionValue
    from tests.support.sim import start_sim

    found, cluster, why = database(kind, base, "valuation.db")
    if found is None:
        note(f"PostgreSQL unavailable: {why}")
        return []
    url = found
    sim = start_sim()
    app = make_appliance(url, base / f"data-{kind}", sim)
    rows: list[tuple[str, ...]] = []
    try:
        note(f"[{kind}] seeding {args.employees:,} employees x {args.assets} holdings, {args.trades:,} trades ...")
        started = time.perf_counter()
        seed(app, args.employees, args.assets, args.trades, args.days)
        note(f"[{kind}]   {time.perf_counter() - started:.1f} s; first pricing run against the simulators ...")
        started, cpu_started = time.perf_counter(), time.process_time()
        cold = run_pricing(app)
        cold_s = time.perf_counter() - started
        CPU["cold"] = time.process_time() - cpu_started
        note(f"[{kind}]   {cold_s:.1f} s: " + "; ".join(cold.lines()))
        rows.append((f"{kind}: first run, caches cold (simulators on loopback, in this process)", f"{cold_s:.2f} s",
                     cpu("cold"), f"{cold.transactions:,} trades, {cold.counters.candle_days_fetched} candle days and "
                     f"{cold.counters.tickers_fetched} tickers fetched", f"{rss_mib():.0f}"))
        settings = app.settings
        actor = system_actor("bench")

        def holdings() -> Any:
            with app.store.read() as session:
                return read.holdings_by_employee(session, settings)

        seconds, totals = timed(holdings, args.repeat, "holdings")
        unpriced = sum(t.unpriced for t in totals.values())
        rows.append((f"{kind}: holdings of {len(totals):,} employees valued and totalled, warm cache",
                     f"{seconds:.2f} s", cpu("holdings"), f"{sum(t.priced for t in totals.values()):,} priced, "
                     f"{unpriced:,} unpriced (ADA); {len(totals) / seconds:,.0f} employees/s", f"{rss_mib():.0f}"))

        def report() -> Any:
            with app.store.read() as session:
                return reports.holdings_rows(session, actor, settings)

        seconds, lines = timed(report, args.repeat, "report")
        rows.append((f"{kind}: holdings report rows with values ({len(lines) - 1:,} holdings)", f"{seconds:.2f} s",
                     cpu("report"), f"{(len(lines) - 1) / seconds:,.0f} holdings/s", f"{rss_mib():.0f}"))

        def current() -> PricingResult:
            book = PriceBook(app)
            result = PricingResult(settings.valuation.currency)
            price_holdings(app, book, Resolver(book.current_leg, book.sources_for, settings.valuation.cross_via),
                           result)
            assert book.counters.tickers_fetched == 0, "warm: no ticker fetched"
            return result

        seconds, result = timed(current, args.repeat, "current")
        rows.append((f"{kind}: current prices of the {result.assets} assets held, warm cache", f"{seconds:.2f} s",
                     cpu("current"), "no venue asked", f"{rss_mib():.0f}"))

        def historical() -> tuple[float, float, PricingResult]:
            """One transaction pass after every stored value is deleted (the deletion is not timed)."""
            with app.store.unit_of_work() as session:
                session.execute(delete(TransactionValue))
            started, cpu_started = time.perf_counter(), time.process_time()
            book = PriceBook(app)
            result = PricingResult(settings.valuation.currency)
            price_transactions(app, book, result, args.trades)
            seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
            assert book.counters.candle_days_fetched == 0, "warm: every candle day came from the store"
            assert result.transactions == args.trades, result.transactions
            return seconds, cpu_seconds, result

        runs = [historical() for _ in range(args.repeat)]
        seconds = statistics.median(r[0] for r in runs)
        CPU["trades"] = statistics.median(r[1] for r in runs)
        result = runs[-1][2]
        rows.append((f"{kind}: {args.trades:,} trades priced from cached candles and stored",
                     f"{seconds:.2f} s", cpu("trades"), f"{args.trades / seconds:,.0f} trades/s; "
                     f"{result.transactions_unpriced:,} unpriced", f"{rss_mib():.0f}"))
        return rows
    finally:
        app.close()
        sim.stop()
        if cluster is not None:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--employees", type=int, default=10_000)
    parser.add_argument("--assets", type=int, default=5)
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=20, help="the trades' span back from now")
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="vigatra-bench-valuation-") as directory:
        for kind in args.databases:
            rows += run_database(kind, args, Path(directory))
    print_table(f"Valuation ({args.employees:,} employees x {args.assets} holdings; {args.trades:,} trades over "
                f"{args.days} days; median of {args.repeat})", rows,
                ("run", "time", "CPU (this process)", "detail", "max RSS (MiB)"))


if __name__ == "__main__":
    main()
