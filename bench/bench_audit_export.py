"""Audit trail at scale: CSV export and chain verification of N events (default 10 million), each
measured in its own process so its peak RSS is its own (with worker processes: the largest single
process, parent or worker). Targets: >= 250k events/s each, peak RSS
under 150 MB.

    .venv/bin/python -m bench.bench_audit_export [--events 10000000] [--db PATH] [--workers 2]

The CSV export runs as the API runs it (worker processes, one per CPU), and in one process for the
ratio; --workers sets the processes of the second verification row.

The database is built once (rows with a real hash chain, inserted in bulk) and reused when --db
names an existing file. Its events look like the appliance's: a third come from browsers, whose user
agents hold commas ("KHTML, like Gecko"), and a fifth carry a JSON detail (the query's parameter
names) — CSV cells that must be quoted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import print_table

BROWSER = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
           "Safari/537.36")
CLIENT = "python-requests/2.32.3"


def build(path: Path, events: int) -> float:
    from sqlalchemy import insert, update

    from appliance.audit.chain import COLUMNS, GENESIS, event_hash
    from appliance.store.migrate import upgrade
    from appliance.store.models import AuditChainHead, AuditEvent
    from appliance.store.session import make_engine

    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    started = time.perf_counter()
    prev = GENESIS
    base = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    with engine.begin() as conn:
        batch = []
        for i in range(1, events + 1):
            row = {"id": i, "timestamp": base + dt.timedelta(seconds=i // 10, milliseconds=i % 1000),
                   "actor_type": "user", "user_id": i % 50, "api_key_id": None, "action": "employees.list",
                   "resource_type": "employees", "resource_id": str(i % 300), "ip_address": f"10.0.0.{i % 250}",
                   "request_id": f"{i:032x}", "method": "GET", "path": f"/api/v1/employees/{i % 300}", "status": 200,
                   "user_agent": BROWSER if i % 3 == 0 else CLIENT, "outcome": "success",
                   "detail": '{"query": ["from", "to"]}' if i % 5 == 0 else "",
                   "prev_hash": prev}
            prev = row["hash"] = event_hash([row[c] for c in COLUMNS])
            batch.append(row)
            if len(batch) == 20000:
                conn.execute(insert(AuditEvent), batch)
                batch = []
        if batch:
            conn.execute(insert(AuditEvent), batch)
        conn.execute(update(AuditChainHead).where(AuditChainHead.id == 1).values(last_id=events, last_hash=prev))
    engine.dispose()
    return time.perf_counter() - started


def phase(kind: str, db: str, workers: int) -> None:
    """Runs in a child process; prints one JSON line: events, seconds, peak RSS (MB)."""
    from appliance.store.session import Store, make_engine

    store = Store(make_engine(f"sqlite:///{db}"))
    started = time.perf_counter()
    count = 0
    if kind == "csv":
        from appliance.audit.export import AuditFilter, export_csv

        # As GET /api/v1/audit?format=csv does (workers=None: one per CPU), bytes to a sink.
        with open(os.devnull, "wb") as sink:
            for part in export_csv(store, AuditFilter(), workers=workers or None):
                sink.write(part.data)
                count += part.rows
    elif kind == "verify":
        from appliance.audit.chain import GENESIS
        from appliance.audit.verify import walk_events

        count = walk_events(store, 1, GENESIS, workers=workers).count
    seconds = time.perf_counter() - started
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"events": count, "seconds": seconds, "rss_mb": peak / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--db", help="reuse or create this SQLite file")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--phase", choices=["csv", "verify"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phase(args.phase, args.db, args.workers)
        return
    db = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="vigatra-audit-bench-")) / "audit.db"
    if not db.exists():
        seconds = build(db, args.events)
        print(f"built {args.events:,} chained events in {seconds:.0f}s ({db}, {db.stat().st_size / 2**30:.1f} GiB)")
    rows = []
    phases = (("CSV export (API path: a process per CPU)", "csv", 0), ("CSV export, 1 process", "csv", 1),
              ("chain verification, 1 process", "verify", 1),
              (f"chain verification, {args.workers} processes", "verify", args.workers))
    for label, kind, workers in phases:
        out = subprocess.run([sys.executable, "-m", "bench.bench_audit_export", "--phase", kind, "--db", str(db),
                              "--workers", str(workers)], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append((label, f"{result['events']:,}", f"{result['seconds']:.1f}",
                     f"{result['events'] / result['seconds']:,.0f}", f"{result['rss_mb']:.0f}"))
    print_table(f"Audit trail at scale ({os.cpu_count()} cores)", rows,
                ("operation", "events", "seconds", "events/s", "peak RSS MB (largest process)"))


if __name__ == "__main__":
    main()
