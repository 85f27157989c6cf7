"""Backup and restore at scale: `backup create`, `backup verify` and `backup restore` of a SQLite database
of N audit events (default 1 million), each against a baseline in the same run.

    .venv/bin/python -m bench.bench_backup [--events 1000000] [--db PATH]

Baselines: a plain copy of the database file (what `cp` of a stopped appliance costs) for create,
and `audit verify` of the same database for restore (a restore verifies the whole chain and every
sealed value after it puts the database back, so the chain walk is its floor). The database is built
once with a real hash chain (bench_audit_export.build) and reused when --db names an existing file.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.bench_audit_export import build
from bench.common import print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path)
    args = parser.parse_args()

    from appliance.audit.checkpoints import signer_from
    from appliance.audit.verify import verify_database
    from appliance.crypto import provider_from_settings
    from appliance.services.backup import create_backup, verify_backup
    from appliance.services.keys import KeyService
    from appliance.services.restore import restore_backup
    from appliance.settings import settings_from_mapping
    from appliance.store.session import Store, make_engine

    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    data = work / "data"
    data.mkdir(mode=0o700)
    db = data / "vigatra.db"
    if args.db and args.db.exists():
        shutil.copyfile(args.db, db)
    else:
        build(db, args.events)
        if args.db:
            shutil.copyfile(db, args.db)
    os.environ["VIGATRA_BENCH_KEK"] = base64.b64encode(os.urandom(32)).decode()
    settings = settings_from_mapping({"data_dir": str(data), "appliance_id": "bench",
                                      "keys": {"provider": "env", "env_var": "VIGATRA_BENCH_KEK"}}, env={})
    provider = provider_from_settings(settings)
    provider.check()
    signer = signer_from(provider)
    store = Store(make_engine(settings.database_url))
    with store.unit_of_work() as session:
        KeyService(provider).create_first(session)
    size_mb = db.stat().st_size / 1e6
    dest = work / "backups"
    dest.mkdir()
    rows: list[tuple[str, ...]] = []
    try:
        started = time.perf_counter()
        shutil.copyfile(db, work / "copy.db")
        copy_s = time.perf_counter() - started
        started = time.perf_counter()
        result = create_backup(store, settings, provider, signer, dest=dest, actor_label="bench")
        create_s = time.perf_counter() - started
        rows.append(("backup create (snapshot, encrypt, sign, re-read)", f"{create_s:.2f}",
                     f"{size_mb / create_s:.0f}", f"{create_s / copy_s:.1f}x a file copy ({copy_s:.2f} s)"))
        started = time.perf_counter()
        verify_backup(result.path, provider=provider, public_key_pem=signer.public_pem)
        verify_s = time.perf_counter() - started
        rows.append(("backup verify (hashes, decrypt every chunk)", f"{verify_s:.2f}", f"{size_mb / verify_s:.0f}",
                     f"{verify_s / copy_s:.1f}x a file copy"))
        started = time.perf_counter()
        verify_database(store, appliance_id="bench", public_key_pem=signer.public_pem)
        chain_s = time.perf_counter() - started
        store.dispose()
        started = time.perf_counter()
        report = restore_backup(settings, provider, result.path, actor_label="bench")
        restore_s = time.perf_counter() - started
        assert not report.problems, report.problems
        rows.append(("backup restore (verify, replace, migrate, audit+keys verify)", f"{restore_s:.2f}",
                     f"{size_mb / restore_s:.0f}", f"{restore_s / chain_s:.1f}x audit verify ({chain_s:.2f} s)"))
    finally:
        store.dispose()
        shutil.rmtree(work, ignore_errors=True)
    print_table(f"Backup of {args.events:,} audit events ({size_mb:.0f} MB SQLite)", rows,
                ("operation", "seconds", "MB/s", "against the baseline"))


if __name__ == "__main__":
    main()
