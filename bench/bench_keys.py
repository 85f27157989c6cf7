"""Benchmark of secrets at rest: seal/open throughput and `vigatra keys rotate` over many secrets on SQLite.

Why a script and not a timed test (issue 3 "Benchmark"): timings depend on the machine, so CI
must not fail on them; the figures go into docs/PERFORMANCE.md instead. The target is a rotation
of 100k secrets in under 60 s on 2 cores.

What is measured:
- seal, open, and seal+open of a typical API secret with one data key, single thread, through
  the Sealer (pure AES-GCM + associated data) and through KeyService (what services call);
- `keys rotate` over a fresh SQLite database holding N connections with 1-3 sealed columns each,
  bulk-inserted (one multi-row INSERT per 10k rows), run through the real CLI command in-process
  (begin, batches, retirement, audit events, counts). The KEK comes from the env provider.

Usage: .venv/bin/python bench/bench_keys.py [--connections 100000] [--columns 1 3] [--batch-size 500]
Prints a markdown table to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

COLUMNS = ("api_secret_sealed", "api_key_sealed", "passphrase_sealed")
KEK_VAR = "VIGATRA_BENCH_KEK"


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def bench_seal_open(ops: int) -> list[tuple[str, str, str]]:
    from appliance.crypto import Sealer, generate_dek
    from appliance.services.keys import KeyService

    secret = "S" + secrets.token_urlsafe(48)  # a 64-character API secret
    sealer = Sealer({1: generate_dek()}, 1)
    rows: list[tuple[str, str, str]] = []

    start = time.perf_counter()
    blobs = [sealer.seal(secret, table="connections", column="api_secret_sealed", row_id=i) for i in range(ops)]
    seal_s = time.perf_counter() - start
    start = time.perf_counter()
    for i, blob in enumerate(blobs):
        sealer.open(blob, table="connections", column="api_secret_sealed", row_id=i)
    open_s = time.perf_counter() - start
    rows.append(("Sealer.seal (AES-256-GCM, 64-byte secret)", f"{ops:,}", f"{ops / seal_s:,.0f}/s"))
    rows.append(("Sealer.open", f"{ops:,}", f"{ops / open_s:,.0f}/s"))
    rows.append(("Sealer seal+open pairs", f"{ops:,}", f"{ops / (seal_s + open_s):,.0f}/s"))

    keys = KeyService(provider=None)  # type: ignore[arg-type]  # opening needs no provider once keys are loaded
    keys._sealer = sealer
    start = time.perf_counter()
    for i, blob in enumerate(blobs):
        keys.open_text(None, blob, table="connections", column="api_secret_sealed", row_id=i)
    ks_s = time.perf_counter() - start
    rows.append(("KeyService.open_text (version lookup + open + decode)", f"{ops:,}", f"{ops / ks_s:,.0f}/s"))
    return rows


def populate(url: str, keys: Any, connections: int, columns: int) -> float:
    from sqlalchemy import Table, insert

    from appliance.store.models import Connection, Employee
    from appliance.store.session import Store, make_engine

    store = Store(make_engine(url))
    sealer = keys.sealer
    started = time.perf_counter()
    with store.unit_of_work() as session:
        employee = Employee(name="Bench", email="bench@example.test")
        session.add(employee)
        session.flush()
        employee_id = employee.id
    table = cast(Table, Connection.__table__)
    chunk = 10000
    for first in range(1, connections + 1, chunk):
        rows = []
        for row_id in range(first, min(first + chunk, connections + 1)):
            row: dict[str, Any] = {"id": row_id, "employee_id": employee_id, "kind": "exchange", "venue": "kraken",
                                   "label": "", "status": "active", "status_reason": "", "address": "",
                                   "key_fingerprint": "", "scope_verified": False, "consecutive_failures": 0}
            for column in COLUMNS[:columns]:
                row[column] = sealer.seal(f"{column[:3]}-{row_id}-{secrets.token_hex(16)}", table="connections",
                                          column=column, row_id=row_id)
            rows.append(row)
        with store.unit_of_work() as session:
            session.execute(insert(table), rows)
    store.dispose()
    return time.perf_counter() - started


def bench_rotation(connections: int, columns: int, batch_size: int) -> tuple[str, str, str, str]:
    import yaml
    from click.testing import CliRunner

    from appliance.cli.main import cli
    from appliance.crypto import provider_from_settings
    from appliance.services.keys import KeyService
    from appliance.settings import load_settings
    from appliance.store.migrate import upgrade
    from appliance.store.session import Store, make_engine

    with tempfile.TemporaryDirectory(prefix="vigatra-bench-") as tmp:
        base = Path(tmp)
        data = base / "data"
        data.mkdir(mode=0o700)
        url = f"sqlite:///{data / 'vigatra.db'}"
        config = base / "vigatra.yaml"
        config.write_text(yaml.safe_dump({"data_dir": str(data), "database": {"url": url},
                                          "keys": {"provider": "env", "env_var": KEK_VAR}}), encoding="utf-8")
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        settings = load_settings(config)
        store = Store.from_settings(settings)
        keys = KeyService(provider_from_settings(settings))
        with store.unit_of_work() as session:
            keys.create_first(session)
        store.dispose()
        values = connections * columns
        note(f"inserting {connections:,} connections x {columns} sealed column(s) = {values:,} secrets ...")
        insert_s = populate(url, keys, connections, columns)
        note(f"  {insert_s:.1f} s; rotating with batch size {batch_size} ...")
        started = time.perf_counter()
        result = CliRunner().invoke(cli, ["--config", str(config), "keys", "rotate", "--batch-size", str(batch_size)])
        rotate_s = time.perf_counter() - started
        if result.exit_code != 0:
            raise SystemExit(f"rotate failed: {result.output}")
        note(f"  {rotate_s:.1f} s: {result.output.strip().splitlines()[-1]}")
        started = time.perf_counter()
        verify = CliRunner().invoke(cli, ["--config", str(config), "keys", "verify"])
        verify_s = time.perf_counter() - started
        if verify.exit_code != 0:
            raise SystemExit(f"verify failed: {verify.output}")
        return (f"{connections:,} x {columns} = {values:,}", str(batch_size),
                f"{rotate_s:.1f} s ({values / rotate_s:,.0f} secrets/s)",
                f"{verify_s:.1f} s ({values / verify_s:,.0f} secrets/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=200000, help="seal/open operations")
    parser.add_argument("--connections", type=int, default=100000)
    parser.add_argument("--columns", type=int, nargs="+", default=[1, 3], choices=[1, 2, 3],
                        help="sealed columns per connection (1: 100k secrets, 3: 300k)")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[500])
    args = parser.parse_args()
    os.environ[KEK_VAR] = base64.b64encode(os.urandom(32)).decode("ascii")

    note(f"seal/open x {args.ops:,} ...")
    crypto_rows = bench_seal_open(args.ops)
    rotation_rows = [bench_rotation(args.connections, columns, size)
                     for columns in args.columns for size in args.batch_size]

    print(f"Machine: {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}, SQLite (WAL, synchronous=FULL, "
          "secure_delete=ON)\n")
    print("| operation | count | throughput |")
    print("| --- | ---: | ---: |")
    for name, count, rate in crypto_rows:
        print(f"| {name} | {count} | {rate} |")
    print()
    print("| `keys rotate` on SQLite: connections x sealed columns = secrets | batch size | rotate "
          "| `keys verify` |")
    print("| --- | ---: | ---: | ---: |")
    for secrets_label, size, rotate, verify in rotation_rows:
        print(f"| {secrets_label} | {size} | {rotate} | {verify} |")


if __name__ == "__main__":
    main()
