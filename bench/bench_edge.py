"""Edge cost: authenticated API throughput (JWT and API key) against a bare Flask route on the same
waitress server, in one run. The edge route does everything a real request does at the edge —
transport facts, credential check against the in-memory state, the route's permission, security
headers — and the audit writer is swapped for a no-op so that this figure isolates the edge
(bench_audit_overhead.py measures the audit write). Target: edge checks cost under 5% of a request.

    .venv/bin/python bench/bench_edge.py [--seconds 10] [--connections 16]
"""

from __future__ import annotations

import argparse

from bench.common import NullAudit, load, print_table, scratch_appliance, start_server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
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
    runs = [
        ("bare Flask route", f"{url}/bare/ping", {}),
        ("edge + JWT", f"{url}/api/v1/bench/ping", {**tls, "Authorization": f"Bearer {token['access_token']}"}),
        ("edge + API key", f"{url}/api/v1/bench/ping", {**tls, "Authorization": f"Bearer {key}"}),
    ]
    load(runs[0][1], {}, seconds=2, connections=args.connections)  # warm up
    results = []
    for name, target, headers in runs:
        results.append((name, load(target, headers, seconds=args.seconds, connections=args.connections)))
    base = results[0][1].requests_per_second
    rows = []
    for name, result in results:
        cost = 1 - result.requests_per_second / base
        rows.append((name, f"{result.requests_per_second:,.0f}", f"{result.latency_ms_p50 or 0:.2f}",
                     str(result.errors), f"{result.requests_per_second / base:.3f}", f"{cost * 100:.1f}%"))
    print_table(f"Edge cost ({results[0][1].tool}, {args.connections} connections, {args.seconds}s each)", rows,
                ("route", "req/s", "p50 ms", "errors", "ratio to bare", "edge cost"))
    server.close()
    app.close()


if __name__ == "__main__":
    main()
