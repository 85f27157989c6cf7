"""`vigatra backup restore`: put a verified backup back into a stopped appliance.

Order, each step refusing before anything changes when it can:

1. verify the backup completely (signature, hashes, every chunk decrypted and its digest checked);
2. check it belongs to this appliance (``appliance_id``) and that this version knows its schema;
3. take the restore lock, which fails while any `vigatra serve` uses the database (store/serve_lock.py);
4. keep what is being replaced: SQLite moves the old database file aside (``<db>.replaced-<time>``);
   PostgreSQL first writes a backup of the current database (skipped with ``keep_replaced=False``);
5. replace the database (SQLite: decrypt into a new file beside it, integrity-check it, rename it
   into place; PostgreSQL: one transaction, store/dump.py), then migrate it to this version's schema
   (unless asked not to: a rollback to the release that made the backup);
6. append a ``backup.restore`` event and a signed ``restore`` checkpoint naming the restored head
   and the head that was replaced — the next audit export states both (the gap) to its reader;
7. verify the audit chain and open every sealed value (`audit verify`, `keys verify`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, inspect, text

from appliance.audit.checkpoints import Signer, signer_from, write_checkpoint
from appliance.audit.verify import ChainReport, verify_database
from appliance.audit.writer import AuditRecord, append
from appliance.crypto import KeyProvider
from appliance.errors import Conflict, IntegrityFailure, VigatraError
from appliance.services.backup import (
    DATABASE_NAME,
    BackupSummary,
    create_backup,
    open_file,
    unwrap_backup_key,
    verify_backup,
)
from appliance.services.keys import KeyService, SealFailure
from appliance.settings import Settings
from appliance.store.base import utcnow
from appliance.store.dump import (
    ChainHead,
    ChunkReader,
    check_sqlite_file,
    describe_sqlite_file,
    known_revisions,
    load_postgres,
    sqlite_path,
)
from appliance.store.migrate import upgrade
from appliance.store.serve_lock import hold_for_restore
from appliance.store.session import Store

log = logging.getLogger(__name__)


@dataclass
class RestoreReport:
    backup: BackupSummary
    restored_head: ChainHead
    replaced_head: ChainHead | None
    kept: str
    chain: ChainReport | None = None
    sealed_ok: int = 0
    seal_failures: list[SealFailure] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def lost_events(self) -> int:
        if self.replaced_head is None:
            return 0
        return max(0, self.replaced_head.last_event_id - self.restored_head.last_event_id)

    def lines(self) -> list[str]:
        out = [f"restored backup {self.backup.path.name} (made {self.backup.created_at}); audit head is event "
               f"{self.restored_head.last_event_id}"]
        if self.replaced_head is not None:
            out.append(f"the replaced database ended at audit event {self.replaced_head.last_event_id}: "
                       f"{self.lost_events} event(s) after the backup are not in the restored database; the next "
                       "audit export states this gap (signed)")
        if self.kept:
            out.append(f"the replaced database is kept: {self.kept}")
        if self.chain is not None:
            out.append(f"audit verify: {self.chain.summary()}")
        out.append(f"keys verify: {self.sealed_ok} sealed value(s) open"
                   + (f", {len(self.seal_failures)} FAILED" if self.seal_failures else ""))
        out.extend(f"PROBLEM: {p}" for p in self.problems)
        return out


def _current_head(engine: Engine) -> ChainHead | None:
    """The chain head of the database about to be replaced, if it has one (for the gap statement)."""
    try:
        if "audit_chain_head" not in inspect(engine).get_table_names():
            return None
        with engine.connect() as conn:
            row = conn.execute(text("SELECT last_id, last_hash, purged_through_id FROM audit_chain_head "
                                    "WHERE id = 1")).first()
    except Exception:  # noqa: BLE001 - a broken database being replaced has no head worth stating
        return None
    return ChainHead(int(row[0]), str(row[1]), int(row[2])) if row is not None else None


def _check_backup_fits(summary: BackupSummary, settings: Settings, dialect: str) -> None:
    manifest = summary.manifest
    if manifest.get("appliance_id") != settings.appliance_id:
        raise Conflict(f"backup {summary.path.name} is of appliance {manifest.get('appliance_id')}, the configuration "
                       f"is for {settings.appliance_id}: a rebuilt host takes the id of the appliance it replaces "
                       "(set appliance_id in the configuration)")
    database = manifest["database"]
    if database.get("dialect") != dialect:
        raise Conflict(f"backup {summary.path.name} holds a {database.get('dialect')} database, but database.url "
                       f"is {dialect}")
    if database.get("schema_revision") not in known_revisions():
        raise Conflict(f"backup {summary.path.name} has schema revision {database.get('schema_revision')}, which this "
                       "version of Vigatra does not know (a newer one made it): restore it with that release")


def _restore_sqlite(engine: Engine, summary: BackupSummary, key: bytes) -> tuple[ChainHead, str]:
    db_path = sqlite_path(engine)
    engine.dispose()
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    incoming = db_path.with_name(f".{db_path.name}.restore-{stamp}")
    try:
        fd = os.open(incoming, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            for chunk in open_file(summary.path, summary.manifest, key, DATABASE_NAME):
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        check_sqlite_file(incoming)
        info = describe_sqlite_file(incoming)
        expected = summary.head
        if (info.head.last_event_id, info.head.last_hash) != (expected["last_event_id"], expected["last_hash"]):
            raise IntegrityFailure("the restored database's audit head differs from the one its manifest names")
        kept = ""
        if db_path.exists():
            kept_path = db_path.with_name(f"{db_path.name}.replaced-{stamp}")
            for suffix in ("", "-wal", "-shm"):
                old = Path(str(db_path) + suffix)
                if old.exists():
                    old.rename(Path(str(kept_path) + suffix))
            kept = str(kept_path)
        incoming.rename(db_path)
        return info.head, kept
    finally:
        with contextlib.suppress(FileNotFoundError):
            incoming.unlink()


def _restore_postgres(engine: Engine, summary: BackupSummary, key: bytes, migrate: bool) -> ChainHead:
    reader = ChunkReader(open_file(summary.path, summary.manifest, key, DATABASE_NAME))
    info = load_postgres(engine, reader, migrate=migrate)  # type: ignore[arg-type]  # a read-only file object
    expected = summary.head
    if (info.head.last_event_id, info.head.last_hash) != (expected["last_event_id"], expected["last_hash"]):
        raise IntegrityFailure("the restored database's audit head differs from the one its manifest names")
    return info.head


def _record_restore(store: Store, settings: Settings, signer: Signer, summary: BackupSummary, restored: ChainHead,
                    replaced: ChainHead | None, actor_label: str) -> None:
    detail: dict[str, Any] = {
        "backup_id": summary.backup_id, "backup_created_at": summary.created_at,
        "backup_manifest_sha256": summary.manifest_sha256,
        "restored_head": {"last_event_id": restored.last_event_id, "last_hash": restored.last_hash},
        "replaced_head": ({"last_event_id": replaced.last_event_id, "last_hash": replaced.last_hash}
                          if replaced is not None else None),
    }
    with store.unit_of_work() as session:
        append(session, [AuditRecord(action="backup.restore", actor_type="system", resource_type="backup",
                                     resource_id=summary.backup_id, ip_address="local", method="CLI",
                                     path="backup restore", user_agent=actor_label, outcome="success",
                                     detail=json.dumps(detail, sort_keys=True))])
        write_checkpoint(session, signer, "restore", settings.appliance_id, detail)


def restore_backup(settings: Settings, provider: KeyProvider, source: Path | str, *, actor_label: str,
                   keep_replaced: bool = True, database_url: str | None = None, migrate: bool = True
                   ) -> RestoreReport:
    """Restore ``source`` into the configured database (see the module docstring for the steps).

    ``migrate=False`` leaves the schema at the backup's revision: install.sh's rollback restores the
    pre-upgrade backup with the newer release, for the older release it then switches back to.
    """
    signer = signer_from(provider)
    summary = verify_backup(source, provider=provider, public_key_pem=None)
    target = Store.from_settings(settings) if database_url is None else Store(_engine_for(settings, database_url))
    try:
        _check_backup_fits(summary, settings, target.dialect)
        key = unwrap_backup_key(summary.manifest, provider, summary.path)
        lock = hold_for_restore(target.engine)
        try:
            replaced = _current_head(target.engine)
            kept = ""
            if target.dialect == "sqlite":
                restored, kept = _restore_sqlite(target.engine, summary, key)
            else:
                if keep_replaced and replaced is not None:
                    kept = str(_safety_backup(target, settings, provider, signer).path)
                restored = _restore_postgres(target.engine, summary, key, migrate)
            if migrate:
                upgrade(target.engine)
            _record_restore(target, settings, signer, summary, restored, replaced, actor_label)
        finally:
            lock.release()
        report = RestoreReport(summary, restored, replaced, kept)
        _verify_restored(target, settings, provider, signer, report)
        return report
    finally:
        target.dispose()


def _engine_for(settings: Settings, url: str) -> Engine:
    from appliance.store.session import make_engine

    return make_engine(url, busy_timeout_ms=settings.database.busy_timeout_ms)


def _safety_backup(store: Store, settings: Settings, provider: KeyProvider, signer: Signer) -> Any:
    dest = settings.data_dir / "replaced-backups"
    dest.mkdir(mode=0o700, exist_ok=True)
    try:
        return create_backup(store, settings, provider, signer, dest=dest, origin="restore",
                             actor_label="restore", allow_inside_data=True)
    except VigatraError as exc:
        raise Conflict(f"could not back up the database about to be replaced ({exc.message}); fix that, or restore "
                       "with --no-keep-replaced") from None


def _verify_restored(store: Store, settings: Settings, provider: KeyProvider, signer: Signer,
                     report: RestoreReport) -> None:
    try:
        report.chain = verify_database(store, appliance_id=settings.appliance_id, public_key_pem=signer.public_pem)
    except VigatraError as exc:
        report.problems.append(f"audit verify: {exc.message}")
    keys = KeyService(provider)
    try:
        with store.read() as session:
            keys.load(session)
            report.sealed_ok, report.seal_failures = keys.verify(session)
    except VigatraError as exc:
        report.problems.append(f"keys verify: {exc.message}")
    for failure in report.seal_failures:
        report.problems.append(f"keys verify: {failure.table}.{failure.column} row {failure.row_id}: {failure.reason}")
