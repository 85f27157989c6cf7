"""Benchmark of the venue adapters through the sync engine: a full first sync and an incremental
sync of N accounts per venue, against the simulators with 50 ms injected latency per request.

Reported per venue: accounts/s and CPU ms per account sync (the appliance process: adapter, ccxt,
HTTP, sealing, database), requests per account, and as the floor, ccxt's own parse cost for the
same responses: every response body the adapters received is captured at the egress layer, and
the benchmark times ``json.loads`` plus ccxt's unified parser for that endpoint (``parse_balance``,
``parse_trades``, ``parse_transactions``, ``parse_ledger``) over the captured bodies with the venue's
loaded markets. Kalshi is reached by our own client, not ccxt: its floor is ``json.loads`` alone.
The floor is what a sync would cost if fetching were free and ccxt's parsing were all the work.

Setup as in bench_sync.py: keys minted in an in-process simulator that a forked child then serves;
connections inserted with sealed credentials; venue budgets at ``--venue-rps``.

Usage: .venv/bin/python bench/bench_venues.py [--accounts 20] [--venues binance kraken ...]
       [--database sqlite|postgresql] [--latency-ms 50]
Prints a markdown table to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_sync import KEK_VAR, make_appliance, make_due, note, seed, start_sim  # noqa: E402

VENUES = ("binance", "binanceus", "bybit", "coinbase", "gemini", "kraken", "kucoin", "okx", "bitstamp", "kalshi")
HISTORY = {"trades": 120, "deposits": 30, "withdrawals": 10, "fills": 120, "settlements": 10, "positions": 3}


# -- capturing responses at the egress layer ----------------------------------------------------

@dataclass
class Capture:
    enabled: bool = False
    bodies: list[tuple[str, str, bytes]] = field(default_factory=list)  # (venue, path, body)


CAPTURE = Capture()


def install_capture() -> None:
    from urllib.parse import urlsplit

    from appliance.venues import egress

    original = egress.VenueSession.request

    def request(self: Any, method: Any, url: Any, **kwargs: Any) -> Any:
        response = original(self, method, url, **kwargs)
        if CAPTURE.enabled:
            CAPTURE.bodies.append((self.venue_id, urlsplit(str(url)).path, response.content))
        return response

    egress.VenueSession.request = request  # type: ignore[method-assign]


# -- ccxt's parsers per endpoint: (path pattern, parser name, extractor) --------------------------

def _values_with_ids(mapping: Any) -> list[Any]:
    return [dict(v, id=k) for k, v in (mapping or {}).items()] if isinstance(mapping, dict) else []


def _data(body: Any, *keys: str) -> Any:
    for key in keys:
        body = body.get(key) if isinstance(body, dict) else None
    return body


PARSERS: dict[str, list[tuple[str, str, Callable[[Any], Any]]]] = {
    "binance": [(r"/api/v3/account", "balance", lambda b: b), (r"/api/v3/myTrades", "trades", lambda b: b),
                (r"/sapi/v1/capital/(deposit|withdraw)/", "transactions", lambda b: b)],
    "bybit": [(r"/v5/account/wallet-balance", "balance", lambda b: b),
              (r"/v5/execution/list", "trades", lambda b: _data(b, "result", "list")),
              (r"/v5/asset/(deposit|withdraw)/", "transactions", lambda b: _data(b, "result", "rows"))],
    "coinbase": [(r"/api/v3/brokerage/accounts", "balance", lambda b: b),
                 (r"/fills", "trades", lambda b: _data(b, "fills")),
                 (r"/v2/accounts/.+/transactions", "transactions", lambda b: _data(b, "data"))],
    "gemini": [(r"/v1/balances", "balance", lambda b: b), (r"/v1/mytrades", "trades", lambda b: b),
               (r"/v1/transfers", "transactions", lambda b: b)],
    "kraken": [(r"/BalanceEx", "balance", lambda b: b),
               (r"/TradesHistory", "trades", lambda b: _values_with_ids(_data(b, "result", "trades"))),
               (r"/Ledgers", "ledger", lambda b: _values_with_ids(_data(b, "result", "ledger")))],
    "kucoin": [(r"/api/v1/accounts", "balance", lambda b: b),
               (r"/api/v1/fills", "trades", lambda b: _data(b, "data", "items")),
               (r"/api/v1/(deposits|withdrawals)", "transactions", lambda b: _data(b, "data", "items"))],
    "okx": [(r"/api/v5/(account|asset)/balances?$", "balance", lambda b: b),
            (r"/fills-history", "trades", lambda b: _data(b, "data")),
            (r"/api/v5/asset/(deposit|withdrawal)-history", "transactions", lambda b: _data(b, "data"))],
    "bitstamp": [(r"/account_balances", "balance", lambda b: b),
                 (r"/user_transactions", "ledger", lambda b: b)],
}
PARSERS["binanceus"] = PARSERS["binance"]


def parse_balance(client: Any, path: str, body: Any) -> Any:
    """ccxt's balance parser for a raw body: most venues name it differently (parseBalance is only
    implemented where the unified fetchBalance leaves the whole body to it)."""
    if hasattr(client, "parse_balance_custom"):  # binance, binance.us
        return client.parse_balance_custom(body, "spot")
    if hasattr(client, "parse_custom_balance"):  # coinbase
        return client.parse_custom_balance(body)
    if hasattr(client, "parse_trading_balance"):  # okx
        return (client.parse_funding_balance if "/asset/" in path else client.parse_trading_balance)(body)
    if client.id == "kucoin":  # fetchBalance parses each account entry with parse_balance_helper
        return [client.parse_balance_helper(entry) for entry in (body.get("data") or [])]
    return client.parse_balance(body)


def parse_floor(adapter: Any, bodies: list[tuple[str, bytes]]) -> tuple[float, int, int, set[str]]:
    """CPU seconds for json.loads + ccxt's parser over ``bodies``; (seconds, parsed, json-only, the
    paths that had no ccxt parser or whose parser refused the body)."""
    client = adapter.markets() if hasattr(adapter, "markets") else None
    rules = PARSERS.get(adapter.id, [])
    decoded = []
    started = time.process_time()
    for _path, body in bodies:
        decoded.append(json.loads(body or b"null"))
    json_seconds = time.process_time() - started
    parsed = json_only = 0
    unparsed: set[str] = set()
    seconds = json_seconds
    for (path, _body), value in zip(bodies, decoded, strict=True):
        rule = next((r for r in rules if re.search(r[0], path)), None)
        if client is None or rule is None:
            json_only += 1
            unparsed.add(re.sub(r"/[0-9a-f-]{20,}", "/<id>", path))
            continue
        _pattern, kind, extract = rule
        try:
            items = extract(value)
            started = time.process_time()
            if kind == "balance":
                parse_balance(client, path, items)
            elif kind == "trades":
                client.parse_trades(items or [])
            elif kind == "transactions":
                client.parse_transactions(items or [])
            else:
                client.parse_ledger(items or [])
            seconds += time.process_time() - started
            parsed += 1
        except Exception:  # a parser that wants what the unified fetch method would have added first
            json_only += 1
            unparsed.add(re.sub(r"/[0-9a-f-]{20,}", "/<id>", path) + " (parser refused)")
    return seconds, parsed, json_only, unparsed


@dataclass
class Phase:
    seconds: float
    cpu: float
    requests: int
    failed: int
    floor: float
    parsed: int
    json_only: int
    unparsed: set[str]


def run_phase(app: Any, sim: Any, ids: list[int], adapter: Any) -> Phase:
    from appliance.services.sync import run_cycle

    make_due(app, ids)
    sim.control("DELETE", "requests")
    CAPTURE.bodies.clear()
    CAPTURE.enabled = True
    cpu0 = time.process_time()
    started = time.perf_counter()
    result = run_cycle(app)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    CAPTURE.enabled = False
    requests = len(sim.control("GET", "requests")["requests"])
    bodies = [(path, body) for venue, path, body in CAPTURE.bodies if venue == adapter.id]
    floor, parsed, json_only, unparsed = parse_floor(adapter, bodies)
    return Phase(seconds, cpu, requests, len(result.failed), floor, parsed, json_only, unparsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20, help="accounts per venue")
    parser.add_argument("--venues", nargs="+", default=list(VENUES))
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--sim-threads", type=int, default=96)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--venue-rps", type=float, default=1000)
    parser.add_argument("--new-trades", type=int, default=2, help="new trades per account before the incremental sync")
    args = parser.parse_args()
    os.environ[KEK_VAR] = base64.b64encode(secrets.token_bytes(32)).decode()

    from appliance.sim.core import SimState
    from appliance.sim.server import SimApp

    note(f"minting {args.accounts} keys per venue ...")
    sim_app = SimApp(SimState(seed=9))
    keys: list[tuple[str, dict[str, Any]]] = []
    for venue in args.venues:
        for _ in range(args.accounts):
            keys.append((venue, sim_app.state.venues[venue].create_key(["read"], history=dict(HISTORY)).credentials()))
    install_capture()
    rows = []
    with tempfile.TemporaryDirectory(prefix="vigatra-bench-venues-") as tmp:
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
        sim = start_sim(sim_app, args.sim_threads)
        app = make_appliance(url, base / "data", sim, tuple(args.venues), args.workers, args.venue_rps,
                             pool_size=max(10, args.workers))
        try:
            ids = seed(app, keys)
            for venue in args.venues:
                sim.control("POST", f"{venue}/faults", {"latency_ms": args.latency_ms})
            by_venue: dict[str, list[int]] = {}
            for cid, (venue, _creds) in zip(ids, keys, strict=True):
                by_venue.setdefault(venue, []).append(cid)
            for venue in args.venues:
                adapter = app.venues.get(venue)
                if hasattr(adapter, "markets"):
                    adapter.markets()  # loaded once per process: not part of an account's sync
                venue_ids = by_venue[venue]
                note(f"[{venue}] full first sync of {len(venue_ids)} accounts ...")
                full = run_phase(app, sim, venue_ids, adapter)
                for cid, (_v, creds) in zip(ids, keys, strict=True):
                    if cid in venue_ids and args.new_trades:
                        sim.control("POST", f"{venue}/keys/{creds['api_key']}/trades", {"count": args.new_trades})
                note(f"[{venue}]   {full.seconds:.1f} s; incremental sync ...")
                incremental = run_phase(app, sim, venue_ids, adapter)
                rows.append((venue, len(venue_ids), full, incremental))
        finally:
            app.close()
            sim.stop()
            if cluster is not None:
                cluster.stop()

    print(f"Machine: {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}; {args.database}; poller.workers="
          f"{args.workers}; latency {args.latency_ms} ms/request; history per account: {HISTORY['trades']} trades, "
          f"{HISTORY['deposits']} deposits, {HISTORY['withdrawals']} withdrawals (Kalshi: fills, settlements); "
          f"{args.new_trades} new trades per account before the incremental sync\n")
    print("| venue | accounts | sync | accounts/s | CPU ms/account | requests/account | floor: json + ccxt parse "
          "ms/account | responses parsed by ccxt / json only | failed |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: |")
    for venue, n, full, incremental in rows:
        for label, phase in (("full", full), ("incremental", incremental)):
            print(f"| {venue} | {n} | {label} | {n / phase.seconds:.2f} | {phase.cpu * 1000 / n:.1f} "
                  f"| {phase.requests / n:.1f} | {phase.floor * 1000 / n:.2f} | {phase.parsed} / {phase.json_only} "
                  f"| {phase.failed} |")
    print("\nResponses timed with json.loads only (no unified ccxt parser for them, or it refused the raw body):")
    for venue, _n, full, incremental in rows:
        if full.unparsed | incremental.unparsed:
            print(f"- {venue}: {', '.join(sorted(full.unparsed | incremental.unparsed))}")


if __name__ == "__main__":
    main()
