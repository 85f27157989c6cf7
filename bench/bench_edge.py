"""Edge cost: authenticated API throughput (JWT and API key) against a bare Flask route on the same
waitress server, in one run. The edge route does everything a real request does at the edge —
transport facts, credential check against the in-memory state, the route's permission, security
headers — and the audit writer is swapped for a no-op so that this figure isolates the edge
(bench_audit_overhead.py measures the audit write). Target: edge checks cost under 5% of a request.

One request costs a few hundred microseconds here, most of it in waitress, and run-to-run noise on a
shared 2-core machine is of the order of the effect measured; so the three routes are measured in
``--rounds`` interleaved rounds (the order rotating each round), each round's ratios are taken
against that round's bare figure, and the median ratio is reported with the range. A second,
quieter figure decomposes the ratio: the same three requests called in process through the same WSGI
stack (no sockets, no waitress; best of ``--inprocess-rounds`` runs of 20,000 calls) give the edge's
own cost in microseconds, which is then set against the time a whole request takes on the server
(1 / the bare route's median throughput).

    .venv/bin/python -m bench.bench_edge [--seconds 6] [--rounds 5] [--connections 16]
"""

from __future__ import annotations

import argparse
import io
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--inprocess-rounds", type=int, default=5)
    args = parser.parse_args()

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

    @bare.route("/ping")
    def bare_ping() -> object:
        return jsonify({"ok": True})

    wsgi = DispatcherMiddleware(flask_app, {"/bare": bare})
    url, server = start_server(wsgi)
    client = flask_app.test_client()
    token = client.post("/api/v1/auth/token", base_url="https://localhost",
                        json={"username": "alice", "password": built.personas["alice"].password}).get_json()
    key = client.post("/api/v1/apikeys", base_url="https://localhost", json={"username": "alice", "name": "bench"},
                      headers={"Authorization": f"Bearer {token['access_token']}"}).get_json()["api_key"]
    tls = {"X-Forwarded-Proto": "https"}  # the bench client plays the TLS front on loopback
    jwt = {**tls, "Authorization": f"Bearer {token['access_token']}"}
    # The bare route receives the same request bytes (it ignores them): the difference is what the edge does.
    runs = [
        ("bare Flask route", f"{url}/bare/ping", jwt),
        ("edge + JWT", f"{url}/api/v1/bench/ping", jwt),
        ("edge + API key", f"{url}/api/v1/bench/ping", {**tls, "Authorization": f"Bearer {key}"}),
    ]
    for _name, target, headers in runs:  # warm up every path
        load(target, headers, seconds=2, connections=args.connections)
    rates: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    ratios: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    errors = dict.fromkeys(rates, 0)
    tool = ""
    for round_no in range(args.rounds):
        order = runs[round_no % len(runs):] + runs[:round_no % len(runs)]
        measured = {}
        for name, target, headers in order:
            result = load(target, headers, seconds=args.seconds, connections=args.connections)
            measured[name] = result.requests_per_second
            errors[name] += result.errors
            tool = result.tool
        for name, rate in measured.items():
            rates[name].append(rate)
            ratios[name].append(rate / measured[runs[0][0]])
    rows = []
    for name, _, _ in runs:
        ratio = statistics.median(ratios[name])
        rows.append((name, f"{statistics.median(rates[name]):,.0f}", str(errors[name]), f"{ratio:.3f}",
                     f"{(1 - ratio) * 100:.1f}%",
                     f"{(1 - max(ratios[name])) * 100:.1f}% .. {(1 - min(ratios[name])) * 100:.1f}%"))
    micro = {name: in_process(wsgi, target, headers, rounds=args.inprocess_rounds) for name, target, headers in runs}
    request_us = 1e6 / statistics.median(rates[runs[0][0]])
    print_table(f"Edge cost in process (best of {args.inprocess_rounds} x 20,000 WSGI calls; a whole request on "
                f"the server takes {request_us:.0f} us at the bare route's median throughput)",
                [(name, f"{micro[name]:.1f}", f"{micro[name] - micro[runs[0][0]]:.1f}",
                  f"{(micro[name] - micro[runs[0][0]]) / request_us * 100:.1f}%") for name, _, _ in runs],
                ("route", "us per call", "edge us", "edge share of a request"))
    print_table(f"Edge cost ({tool}, {args.connections} connections, {args.rounds} interleaved rounds of "
                f"{args.seconds}s per route)", rows,
                ("route", "median req/s", "errors", "median ratio to bare", "edge cost (median)",
                 "edge cost range over rounds"))
    stop_server(server)
    app.close()


if __name__ == "__main__":
    main()
