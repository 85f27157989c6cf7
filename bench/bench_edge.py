"""Edge cost: authenticated API throughput (JWT and API key) against a bare Flask route on the same
waitress server, in one run. The edge route does everything a real request does at the edge —
transport facts, request id, credential check against the in-memory state, the route's permission,
the audit record — and the audit writer is swapped for a no-op so that this figure isolates the
edge (bench_audit_overhead.py measures the audit write). Target: edge checks cost under 5% of a
request.

Two baselines, both served by the same waitress server:
- "bare Flask route": a plain Flask app, nothing else;
- "bare route + response headers": the same app behind the appliance's security-headers filter
  (CSP, nosniff, Referrer-Policy, no-store, HSTS, X-Request-ID), which every answer this server
  sends carries — 404s, static files and public pages included. The headers are a property of the
  server's answers, not a check, and they cost the server work per answer (waitress validates and
  re-cases every header), so the edge checks are measured against this baseline; the cost of the
  whole appliance path over a plain Flask route is reported too.

One request costs a few hundred microseconds here, most of it in waitress, and run-to-run noise on a
shared 2-core machine is of the order of the effect measured; so the routes are measured in
``--rounds`` interleaved rounds (the order rotating each round), each round's ratios are taken
against that round's baseline figures, and the median ratio is reported with the range. The server's
CPU time per answered request in the same rounds (this process is the server; the load generator runs
in another) gives a second wire figure. A third, quieter one decomposes the cost: the same requests
called in process through the same WSGI stack (no sockets, no waitress; best of
``--inprocess-rounds`` runs of 20,000 calls) give the edge's own cost in microseconds, which is then
set against the time a whole request takes on the server
(1 / the bare route's median throughput).

    .venv/bin/python -m bench.bench_edge [--seconds 4] [--rounds 9] [--connections 16]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from bench.common import NullAudit, load, print_table, scratch_appliance, start_server, stop_server


def in_process(wsgi: Any, url: str, headers: dict[str, str], *, rounds: int, calls: int = 20_000) -> float:
    """Microseconds per call of ``wsgi`` for a GET of ``url`` with ``headers`` (best of ``rounds``)."""
    parts = urlsplit(url)
    base = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": parts.path, "QUERY_STRING": "",
            "SERVER_NAME": parts.hostname, "SERVER_PORT": str(parts.port), "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000", "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
            "HTTP_HOST": parts.netloc, "HTTP_USER_AGENT": "wrk", "HTTP_ACCEPT": "*/*",
            **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}}
    statuses: list[str] = []

    def start_response(status: str, _headers: list[tuple[str, str]], _exc: Any = None) -> None:
        statuses.append(status)

    best = float("inf")
    for _ in range(rounds):
        environs = [{**base, "wsgi.input": io.BytesIO()} for _ in range(calls)]
        started = time.perf_counter()
        for environ in environs:
            for _chunk in wsgi(environ, start_response):
                pass
        best = min(best, (time.perf_counter() - started) / calls * 1e6)
    if any(not s.startswith("200") for s in statuses):
        raise SystemExit(f"{url}: not every in-process call answered 200")
    return best


def with_response_headers(app: Any) -> Any:
    """``app`` behind the appliance's security-headers filter, given the two facts the edge otherwise
    hands the filter (the request came over TLS; its id)."""
    from appliance.boundary.headers import REQUEST_ID_KEY, TLS_KEY, SecurityHeaders

    filtered = SecurityHeaders(app)
    request_id = "0" * 32

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        environ[TLS_KEY] = True
        environ[REQUEST_ID_KEY] = request_id
        return filtered(environ, start_response)

    return wsgi


def _costs(ratios: list[float]) -> tuple[str, str]:
    """The median cost and its range over rounds, from the per-round throughput ratios."""
    return (f"{(1 - statistics.median(ratios)) * 100:.1f}%",
            f"{(1 - max(ratios)) * 100:.1f}% .. {(1 - min(ratios)) * 100:.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--inprocess-rounds", type=int, default=5)
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="let the server and the load generator share every CPU")
    args = parser.parse_args()
    # The server (this process, every thread it starts from here on) on one CPU, the load generator on the
    # others: otherwise they take turns on the same CPUs and the scheduler's choices add to the noise.
    # A GIL-bound server uses about one CPU anyway.
    available = sorted(os.sched_getaffinity(0))
    load_cpus = set(available[1:]) if args.pin and len(available) >= 2 else None
    if load_cpus:
        os.sched_setaffinity(0, {available[0]})

    from flask import Flask, jsonify
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from appliance.app import create_app
    from appliance.boundary.routes import requires

    built, _directory = scratch_appliance()
    app = built.appliance
    app.audit = NullAudit()  # type: ignore[assignment]
    flask_app = create_app(app)

    @requires("employees:read", action="bench.ping")
    def ping() -> object:
        return jsonify({"ok": True})

    flask_app.add_url_rule("/api/v1/bench/ping", "bench_ping", ping)
    bare = Flask("bare")

    @bare.route("/api/v1/bench/ping")
    def bare_ping() -> object:
        return jsonify({"ok": True})

    # The baselines answer the edge route's path under a prefix: the same path for Flask to match (and
    # under /api/, so the filtered copy carries what API answers carry), and the same number of steps
    # for the dispatcher, which tries every prefix of a path before it falls back to the appliance.
    wsgi = DispatcherMiddleware(flask_app, {"/bare": bare, "/headers": with_response_headers(bare)})
    url, server = start_server(wsgi)
    client = flask_app.test_client()
    token = client.post("/api/v1/auth/token", base_url="https://localhost",
                        json={"username": "alice", "password": built.personas["alice"].password}).get_json()
    key = client.post("/api/v1/apikeys", base_url="https://localhost", json={"username": "alice", "name": "bench"},
                      headers={"Authorization": f"Bearer {token['access_token']}"}).get_json()["api_key"]
    tls = {"X-Forwarded-Proto": "https"}  # the bench client plays the TLS front on loopback
    jwt = {**tls, "Authorization": f"Bearer {token['access_token']}"}
    # The baselines receive the same request bytes (they ignore them): the difference is what the edge does.
    bare_name, headers_name = "bare Flask route", "bare route + response headers"
    runs = [
        (bare_name, f"{url}/bare/api/v1/bench/ping", jwt),
        (headers_name, f"{url}/headers/api/v1/bench/ping", jwt),
        ("edge + JWT", f"{url}/api/v1/bench/ping", jwt),
        ("edge + API key", f"{url}/api/v1/bench/ping", {**tls, "Authorization": f"Bearer {key}"}),
    ]
    for _name, target, headers in runs:  # warm up every path
        load(target, headers, seconds=2, connections=args.connections, cpus=load_cpus)
    rates: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    to_bare: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    to_headers: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in runs}  # server CPU us per request
    cpu_to_bare: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    cpu_to_headers: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    errors = dict.fromkeys(rates, 0)
    tool = ""
    for round_no in range(args.rounds):
        order = runs[round_no % len(runs):] + runs[:round_no % len(runs)]
        measured, spent = {}, {}
        for name, target, headers in order:
            started = time.process_time()  # this process is the server: every thread's CPU time counts
            result = load(target, headers, seconds=args.seconds, connections=args.connections, cpus=load_cpus)
            spent[name] = (time.process_time() - started) / max(result.requests, 1) * 1e6
            measured[name] = result.requests_per_second
            errors[name] += result.errors
            tool = result.tool
        for name, rate in measured.items():
            rates[name].append(rate)
            to_bare[name].append(rate / measured[bare_name])
            to_headers[name].append(rate / measured[headers_name])
            cpu[name].append(spent[name])
            cpu_to_bare[name].append(spent[bare_name] / spent[name])
            cpu_to_headers[name].append(spent[headers_name] / spent[name])
    micro = {name: in_process(wsgi, target, headers, rounds=args.inprocess_rounds) for name, target, headers in runs}
    request_us = 1e6 / statistics.median(rates[bare_name])

    def share(us: float) -> str:
        return f"{us:.1f} us = {us / request_us * 100:.1f}%"

    print_table(f"Cost in process (best of {args.inprocess_rounds} x 20,000 WSGI calls; a whole request on the "
                f"server takes {request_us:.0f} us at the bare route's median throughput)",
                [(name, f"{micro[name]:.1f}", share(micro[name] - micro[headers_name]) if name.startswith("edge")
                  else "", share(micro[name] - micro[bare_name])) for name, _, _ in runs],
                ("route", "us per call", "edge checks (over bare route + response headers)",
                 "whole path (over bare Flask route)"))
    print_table(f"Cost on the wire ({tool}, {args.connections} connections, {args.rounds} interleaved rounds of "
                f"{args.seconds}s per route; cost = 1 - throughput ratio, median and range over rounds)",
                [(name, f"{statistics.median(rates[name]):,.0f}", str(errors[name]),
                  *(_costs(to_headers[name]) if name.startswith("edge") else ("", "")), *_costs(to_bare[name]))
                 for name, _, _ in runs],
                ("route", "median req/s", "errors", "edge checks (median)", "edge checks (range)",
                 "whole path over bare Flask (median)", "(range)"))
    print_table("Server CPU per request on the wire (the server process's CPU time over the requests it answered in "
                "the same rounds; cost = 1 - CPU ratio, median and range over rounds)",
                [(name, f"{statistics.median(cpu[name]):.0f} us",
                  *(_costs(cpu_to_headers[name]) if name.startswith("edge") else ("", "")), *_costs(cpu_to_bare[name]))
                 for name, _, _ in runs],
                ("route", "median CPU per request", "edge checks (median)", "edge checks (range)",
                 "whole path over bare Flask (median)", "(range)"))
    stop_server(server)
    app.close()


if __name__ == "__main__":
    main()
