"""The dashboard's pages at firm scale, through waitress with a signed-in browser session.

Setup (not measured): a fresh database (SQLite file, and a throwaway PostgreSQL cluster from tests/support/pg.py)
with ``--employees`` employees in five departments, ``--connections`` connections each (one in a hundred broken),
two open balances per connection, an open alert for one employee in twenty, a recorded value per employee, and
``--transactions`` transactions spread over the connections and the last year. The appliance is served by
waitress on loopback; a session cookie is made by signing in (Compliance, then Admin) and every request carries
it, as a browser's would.

Measured: each page requested ``--requests`` times in turn by one client (so the latency is the page's own, not a
queue's), p50 and p95 in milliseconds, and the p95 as a ratio to the account page's (a signed-in page that runs
no query of the firm's data) measured in the same run:

- the employees list: the first page, a middle page, the last page, a search by name, a search by department on
  page 20, red connections only, open alerts only (page 3), newest first on page 150, a group (every tenth
  employee) on page 10, names Z to A on the sixth page from the end — every request picks the next variant;
- the employees API: a batch of 100, a search, the next batch after a cursor, the group without red connections;
- an employee page (connections, balances, the newest 50 transactions with values, the value history, alerts), a
  different employee each time;
- the overview (``/``) and its API (``/api/v1/overview``): every panel the role may see (alerts by severity and
  age, red connections, coverage, value held, activity per day over 30 days).

Usage: .venv/bin/python bench/bench_dashboard.py [--employees 10000] [--connections 5] [--transactions 2000000]
       [--requests 200] [--databases sqlite postgresql]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import print_table, start_server, stop_server  # noqa: E402

DEPARTMENTS = ("Trading", "Research", "Operations", "Legal", "Sales")
VENUES = ("binance", "kraken", "coinbase", "okx", "bybit", "bitstamp")
ASSETS = ("BTC", "ETH", "SOL", "USDT", "USDC")
AMOUNTS = (Decimal("0.015"), Decimal("1.2345"), Decimal("250"), Decimal("0.00042"), Decimal("12.5"))
BATCH = 20_000


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def seed(app: Any, employees: int, per_employee: int, transactions: int) -> None:
    from sqlalchemy import insert, text

    from appliance.store.models import (
        Alert,
        BalanceSnapshot,
        Connection,
        CoverageInterval,
        Employee,
        EmployeeGroup,
        EmployeeGroupMember,
        EmployeeValue,
        EmployeeValueDay,
        FirmAssetValue,
        FirmValueDay,
        Transaction,
    )

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    connections = employees * per_employee
    with app.store.unit_of_work() as session:
        session.execute(insert(Employee), [{
            "id": n, "name": f"Person {n:05d}", "email": f"person{n}@firm.example", "department": DEPARTMENTS[n % 5],
            "status": "offboarded" if n % 50 == 7 else "active", "created_at": now - dt.timedelta(minutes=n),
        } for n in range(1, employees + 1)])
        for start in range(1, connections + 1, BATCH):
            session.execute(insert(Connection), [{
                "id": c, "employee_id": (c - 1) // per_employee + 1, "kind": "exchange",
                "venue": VENUES[c % len(VENUES)], "label": "", "status": "broken" if c % 100 == 0 else "active",
                "status_reason": "", "address": "", "key_fingerprint": "", "scope_verified": True,
                "consecutive_failures": 0, "created_at": now, "updated_at": now,
            } for c in range(start, min(start + BATCH, connections + 1))])
            session.execute(insert(BalanceSnapshot), [{
                "connection_id": c, "asset": ASSETS[(c + k) % len(ASSETS)], "account": "spot",
                "amount": AMOUNTS[(c + k) % len(AMOUNTS)], "valid_from": now, "observed_until": now,
                "provenance": "api",
            } for c in range(start, min(start + BATCH, connections + 1)) for k in range(2)])
        session.execute(insert(Alert), [{"employee_id": n, "kind": "rule_break", "title": f"Alert for {n}",
                                         "severity": "warning", "status": "open", "created_at": now}
                                        for n in range(1, employees + 1, 20)])
        session.execute(insert(EmployeeValue), [{
            "employee_id": n, "currency": "USD", "balances": Decimal(n * 37 % 500_000), "positions": Decimal(0),
            "balances_unpriced": 0, "positions_unpriced": 0, "as_of": now} for n in range(1, employees + 1)])
        session.execute(insert(EmployeeValueDay), [{
            "employee_id": n, "currency": "USD", "day": now.date() - dt.timedelta(days=d),
            "balances": Decimal(n * 37 % 500_000 + d), "positions": Decimal(0), "balances_unpriced": 0,
            "positions_unpriced": 0, "as_of": now} for n in range(1, employees + 1) for d in range(0, 90, 3)])
        session.execute(insert(FirmValueDay), [{
            "currency": "USD", "day": now.date() - dt.timedelta(days=d), "balances": Decimal(2_500_000_000 + d * 1000),
            "positions": Decimal(0), "balances_unpriced": 0, "positions_unpriced": 0, "employees": employees,
            "as_of": now} for d in range(90)])
        session.execute(insert(FirmAssetValue), [{
            "currency": "USD", "kind": "asset", "asset": a, "amount": Decimal(1000 + k),
            "value": Decimal(10**8 * (k + 1)),
            "unpriced": 0, "reason": "", "holders": employees // 2, "as_of": now} for k, a in enumerate(ASSETS)])
        session.execute(insert(EmployeeGroup), [{"id": 1, "name": "Trading desk", "created_at": now}])
        session.execute(insert(EmployeeGroupMember), [{"group_id": 1, "employee_id": n, "added_at": now}
                                                      for n in range(1, employees + 1, 10)])
        session.execute(insert(CoverageInterval), [{
            "connection_id": c, "stream": "trades", "kind": "gap", "start_at": now - dt.timedelta(hours=c % 48),
            "reason": "auth"} for c in range(100, connections + 1, 100)])
        if app.store.dialect == "postgresql":  # explicit ids: move the sequences past them
            for table in ("employees", "connections", "employee_groups"):
                session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                                     f"(SELECT max(id) FROM {table}))"))
    year = 365 * 86_400
    for start in range(0, transactions, BATCH * 5):
        with app.store.unit_of_work() as session:
            for chunk in range(start, min(start + BATCH * 5, transactions), BATCH):
                session.execute(insert(Transaction), [{
                    "connection_id": i % connections + 1, "stream": "trades", "venue_tx_id": f"t{i}", "kind": "buy",
                    "occurred_at": now - dt.timedelta(seconds=60 + (i * 7919) % year),
                    "asset": ASSETS[i % len(ASSETS)], "amount": AMOUNTS[i % len(AMOUNTS)], "market": "",
                    "provenance": "api", "orphaned": False, "created_at": now,
                } for i in range(chunk, min(chunk + BATCH, transactions))])
        note(f"    {min(start + BATCH * 5, transactions):,} transactions")
    if app.store.dialect == "postgresql":
        with app.store.unit_of_work() as session:
            session.execute(text("ANALYZE"))


def sign_in(app: Any, username: str, password: str) -> tuple[dict[str, str], dict[str, str]]:
    """Sign in as a browser does (the login form, over TLS as far as the app knows) and as an API client does
    (a bearer token): the headers of each."""
    from appliance.app import create_app

    flask_app = create_app(app)
    client = flask_app.test_client()
    client.get("/login", base_url="https://localhost")
    with client.session_transaction() as s:
        csrf = s["csrf"]
    response = client.post("/login", base_url="https://localhost",
                           data={"username": username, "password": password, "csrf_token": csrf})
    assert response.status_code == 302, response.data[:300]
    name = flask_app.config["SESSION_COOKIE_NAME"]
    bearer = client.post("/api/v1/auth/token", base_url="https://localhost",
                         json={"username": username, "password": password}).get_json()["access_token"]
    cookie = client.get_cookie(name, domain="localhost")
    assert cookie is not None, f"no {name} cookie after signing in"
    forwarded = {"X-Forwarded-Proto": "https"}
    return ({"Cookie": f"{cookie.key}={cookie.value}", "Accept": "text/html", **forwarded},
            {"Authorization": f"Bearer {bearer}", **forwarded})


def measure(base: str, headers: dict[str, str], paths: list[str], requests_: int) -> tuple[float, float]:
    import requests

    http = requests.Session()
    times = []
    for n in range(requests_):
        path = paths[n % len(paths)]
        started = time.perf_counter()
        response = http.get(base + path, headers=headers, timeout=60, allow_redirects=False)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {response.status_code} {response.text[:300]}")
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)]


def run_database(kind: str, args: argparse.Namespace, work: Path) -> list[tuple[str, ...]]:
    from appliance.app import create_app
    from appliance.store.migrate import upgrade
    from appliance.store.session import make_engine
    from tests.support.app import build

    cluster = None
    if kind == "sqlite":
        url = f"sqlite:///{work / 'dashboard.db'}"
    else:
        from tests.support.pg import start_cluster

        cluster, why = start_cluster(work / "pg")
        if cluster is None:
            note(f"PostgreSQL unavailable: {why}")
            return []
        url = cluster.fresh_database(migrated=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    built = build(url, work / f"data-{kind}", database={"url": url, "pool_size": 10})
    app = built.appliance
    note(f"[{kind}] seeding {args.employees:,} employees, {args.employees * args.connections:,} connections, "
         f"{args.transactions:,} transactions ...")
    started = time.perf_counter()
    seed(app, args.employees, args.connections, args.transactions)
    note(f"[{kind}]   {time.perf_counter() - started:.0f} s")
    base, server = start_server(create_app(app), threads=4)
    rows: list[tuple[str, ...]] = []
    pick = random.Random(22)
    last_page = -(-args.employees // 50)
    lists = ["/employees", f"/employees?page={last_page // 2}", f"/employees?page={last_page}",
             "/employees?q=person%2009", "/employees?q=legal&page=20", "/employees?red=yes",
             "/employees?alerts=yes&page=3", f"/employees?sort=-added&page={max(1, last_page * 3 // 4)}",
             "/employees?group=1&page=10", f"/employees?sort=-name&page={max(1, last_page - 5)}"]
    try:
        for persona in ("carol", "alice"):
            browser, api_client = sign_in(app, persona, built.personas[persona].password)
            import requests

            answer = requests.get(base + "/api/v1/employees?limit=100", timeout=60, headers=api_client).json()
            cursor = answer["next_cursor"]
            api = ["/api/v1/employees?limit=100", "/api/v1/employees?q=trading&limit=100",
                   f"/api/v1/employees?limit=100&cursor={cursor}", "/api/v1/employees?group=1&red=no&limit=100"]
            people = [f"/employees/{pick.randint(1, args.employees)}" for _ in range(args.requests)]
            pages = {"account page (baseline)": (browser, ["/account"]), "overview /": (browser, ["/"]),
                     "overview API": (api_client, ["/api/v1/overview"]),
                     "employees list (10 variants)": (browser, lists),
                     "employees API (4 variants, bearer token)": (api_client, api),
                     "employee page (a different one each time)": (browser, people)}
            results = {name: measure(base, headers, paths, args.requests) for name, (headers, paths) in pages.items()}
            baseline = results["account page (baseline)"][1]
            for name, (p50, p95) in results.items():
                rows.append((kind, persona, name, f"{p50:.0f}", f"{p95:.0f}", f"{p95 / baseline:.1f}x"))
                note(f"[{kind}] {persona} {name}: p50 {p50:.0f} ms, p95 {p95:.0f} ms")
    finally:
        stop_server(server)
        app.close()
        if cluster is not None:  # its own PostgreSQL, started above: not left running after the run
            cluster.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--employees", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=5, help="per employee")
    parser.add_argument("--transactions", type=int, default=2_000_000)
    parser.add_argument("--requests", type=int, default=200, help="per page kind and persona")
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="vigatra-bench-dashboard-") as work:
        for kind in args.databases:
            rows += run_database(kind, args, Path(work))
    print_table(f"Dashboard pages: {args.employees:,} employees, {args.employees * args.connections:,} connections, "
                f"{args.transactions:,} transactions (one client, {args.requests} requests per row)", rows,
                ("database", "signed in as", "page", "p50 ms", "p95 ms", "p95 / baseline p95"))


if __name__ == "__main__":
    main()
