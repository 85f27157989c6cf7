"""Run every benchmark at the sizes docs/PERFORMANCE.md reports, one after the other (they must not
share the machine), and print each one's output under the command that produced it.

Usage: .venv/bin/python bench/run_all.py [--quick] [--only requests keys ...]
``--quick`` runs each at a small size (a smoke run: minutes, not the reported figures).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (full arguments, quick arguments)
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "requests": (["-m", "bench.bench_requests", "--seconds", "10", "--rounds", "3"],
                 ["-m", "bench.bench_requests", "--seconds", "3", "--rounds", "1"]),
    "requests_postgresql": (
        ["-m", "bench.bench_requests", "--database", "postgresql", "--seconds", "10", "--rounds", "3"],
        ["-m", "bench.bench_requests", "--database", "postgresql", "--seconds", "3", "--rounds", "1"]),
    "keys": (["bench/bench_keys.py"], ["bench/bench_keys.py", "--ops", "20000", "--connections", "10000"]),
    "audit_overhead": (["-m", "bench.bench_audit_overhead", "--seconds", "8", "--connections", "32"],
                       ["-m", "bench.bench_audit_overhead", "--seconds", "2"]),
    "audit_export": (["-m", "bench.bench_audit_export", "--events", "10000000"],
                     ["-m", "bench.bench_audit_export", "--events", "20000"]),
    "venues": (["bench/bench_venues.py", "--accounts", "10"], ["bench/bench_venues.py", "--accounts", "2"]),
    "backup": (["-m", "bench.bench_backup", "--events", "1000000"], ["-m", "bench.bench_backup", "--events", "20000"]),
    "sync": (["bench/bench_sync.py", "--connections", "10000", "--workers", "48"],
             ["bench/bench_sync.py", "--connections", "200", "--databases", "sqlite"]),
    "valuation": (["bench/bench_valuation.py"],
                  ["bench/bench_valuation.py", "--employees", "500", "--trades", "5000", "--databases", "sqlite",
                   "--repeat", "1"]),
    "dashboard": (["bench/bench_dashboard.py"],
                  ["bench/bench_dashboard.py", "--employees", "300", "--transactions", "5000", "--requests", "10",
                   "--databases", "sqlite"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHES))
    args = parser.parse_args()
    failed = []
    for name in args.only or list(BENCHES):
        full, quick = BENCHES[name]
        argv = [sys.executable, *(quick if args.quick else full)]
        print(f"\n## {name}\n\n    {' '.join(['.venv/bin/python', *argv[1:]])}\n", flush=True)
        started = time.monotonic()
        code = subprocess.call(argv, cwd=ROOT)
        print(f"\n({name}: exit {code}, {time.monotonic() - started:.0f} s)", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
