"""Audit overhead: throughput of an authenticated list endpoint (GET /api/v1/employees) with auditing
on (every request's event durable before the response: SQLite WAL with synchronous=FULL, group
commit) versus off (the writer swapped for a no-op), on the same server, in one run.
Target: on >= 90% of off.

    .venv/bin/python -m bench.bench_audit_overhead [--seconds 10] [--connections 16] [--postgres]
"""

from __future__ import annotations

import argparse

from bench.common import NullAudit, load, print_table, scratch_appliance, start_server, stop_server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--postgres", action="store_true", help="use a throwaway PostgreSQL cluster")
    parser.add_argument("--threads", type=int, default=32, help="waitress threads (server.threads)")
    args = parser.parse_args()

    from appliance.app import create_app
    from appliance.services import employees

    overrides = {}
    cluster = None
    if args.postgres:
        import tempfile
        from pathlib import Path

        from tests.support.pg import start_cluster

        cluster, why = start_cluster(Path(tempfile.mkdtemp(prefix="vigatra-bench-pg-")))
        assert cluster is not None, why
        overrides["db_url"] = cluster.fresh_database(migrated=False)
    built, _directory = scratch_appliance(**overrides)
    app = built.appliance
    with app.store.unit_of_work() as session:
        for i in range(50):
            employees.create(session, name=f"Employee {i}", email=f"e{i}@example.com", department="Trading")
    client = create_app(app).test_client()
    token = client.post("/api/v1/auth/token", base_url="https://localhost",
                        json={"username": "alice", "password": built.personas["alice"].password}).get_json()
    headers = {"Authorization": f"Bearer {token['access_token']}", "X-Forwarded-Proto": "https"}

    results = []
    real_audit = app.audit
    for label, audit in (("audit off", NullAudit()), ("audit on (durable)", real_audit)):
        app.audit = audit  # type: ignore[assignment]
        audit.start()
        url, server = start_server(create_app(app), threads=args.threads)
        load(f"{url}/api/v1/employees", headers, seconds=2, connections=args.connections)  # warm up
        before, batches_before = real_audit.events, real_audit.batches
        result = load(f"{url}/api/v1/employees", headers, seconds=args.seconds, connections=args.connections)
        # Both counted over the measured window only (not the warm-up's commits).
        events, batches = real_audit.events - before, real_audit.batches - batches_before
        results.append((label, result, events, batches))
        stop_server(server)
        audit.stop()
    off = results[0][1].requests_per_second
    rows = [(label, f"{r.requests_per_second:,.0f}", f"{r.latency_ms_p50 or 0:.2f}", str(r.errors),
             f"{r.requests_per_second / off:.3f}", f"{events:,}" if events else "-")
            for label, r, events, _batches in results]
    database = "PostgreSQL" if args.postgres else "SQLite (WAL, synchronous=FULL)"
    print_table(f"Audit overhead on {database} ({results[0][1].tool}, {args.connections} connections)", rows,
                ("mode", "req/s", "p50 ms", "errors", "ratio to off", "events written"))
    _label, _result, on_events, on_batches = results[1]
    print(f"\ngroup commit: {on_events:,} events in {on_batches:,} transactions "
          f"({on_events / max(on_batches, 1):.1f} events per commit)")
    app.close()
    if cluster is not None:
        cluster.stop()


if __name__ == "__main__":
    main()
