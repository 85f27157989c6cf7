"""Writing an export to removable media: plan the range, write the files all-or-nothing, read them back
through the verifier, then record the export (an ``audit.export`` event and a signed checkpoint)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from appliance.audit.chain import CHAIN_VERSION, GENESIS, format_timestamp, truncate_ms
from appliance.audit.checkpoints import HEAD_ID, Signer, detail_of, write_checkpoint
from appliance.audit.export import CSV_COLUMNS, AuditFilter, CsvPart, export_csv
from appliance.audit.media.manifest import (
    CSV_NAME,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    PUBLIC_KEY_NAME,
    SIGNATURE_NAME,
)
from appliance.audit.media.verifier import verify_export
from appliance.audit.verify import VerifyFailed
from appliance.audit.writer import AuditRecord, append, record_failure
from appliance.errors import Conflict, Invalid, VigatraError
from appliance.store.base import utcnow
from appliance.store.models import AuditChainHead, AuditCheckpoint, AuditEvent
from appliance.store.session import Store

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class ExportFailed(VigatraError):
    """The export could not be written; nothing was left behind and nothing was recorded."""

    code = "export_failed"



@dataclass(frozen=True)
class ExportResult:
    path: Path
    manifest_sha256: str
    mode: str
    rows: int
    first_event_id: int | None
    last_event_id: int | None
    checkpoint_id: int


def check_destination(dest: Path | str, data_dir: Path | str) -> Path:
    """The resolved destination; Invalid if it is missing, not a directory, read-only or in the data dir."""
    raw = Path(dest)
    if not raw.exists():
        raise Invalid(f"export destination {raw} does not exist (is the removable medium mounted?)", field="dest")
    resolved = raw.resolve(strict=True)
    if not resolved.is_dir():
        raise Invalid(f"export destination {raw} is not a directory", field="dest")
    data = Path(data_dir).resolve()
    if resolved == data or data in resolved.parents:
        raise Invalid(f"refusing to export into the data directory {data} (export to removable media outside it)",
                      field="dest")
    if not os.access(resolved, os.W_OK | os.X_OK) or _read_only_mount(resolved):
        raise Invalid(f"export destination {raw} is read-only", field="dest")
    return resolved


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


@dataclass(frozen=True)
class _Plan:
    mode: str
    after_id: int
    through_id: int
    first_prev_hash: str
    since: dt.datetime | None
    until: dt.datetime | None
    previous_manifest: str | None
    purged_gap: dict[str, int] | None
    restores: tuple[dict[str, Any], ...] = ()


def latest_series_export(session: Session) -> dict[str, Any] | None:
    """Detail of the newest incremental export checkpoint (the series' predecessor), if any."""
    found = _latest_series_checkpoint(session)
    return found[1] if found is not None else None


def _latest_series_checkpoint(session: Session) -> tuple[int, dict[str, Any]] | None:
    """(checkpoint id, detail) of the newest incremental export."""
    after: int | None = None
    while True:
        stmt = select(AuditCheckpoint).where(AuditCheckpoint.kind == "export").order_by(AuditCheckpoint.id.desc())
        if after is not None:
            stmt = stmt.where(AuditCheckpoint.id < after)
        rows = session.execute(stmt.limit(100)).scalars().all()
        for row in rows:
            with contextlib.suppress(ValueError):
                detail = detail_of(row)
                if detail.get("mode") == "incremental":
                    return int(row.id), detail
        if len(rows) < 100:
            return None
        after = int(rows[-1].id)


def restores_since(session: Session, checkpoint_id: int) -> tuple[dict[str, Any], ...]:
    """What each backup restore after checkpoint ``checkpoint_id`` declared (its signed ``restore``
    checkpoint, services/restore.py): the next incremental export repeats it in its signed manifest.

    A restore sets the trail back to the backup's head: the events the replaced database held after
    it are not in the appliance any more, and exports written before the restore may hold them. The
    declaration says which (``not_in_trail``), so a reader of the media sees the gap and its cause.
    """
    rows = session.execute(select(AuditCheckpoint).where(AuditCheckpoint.kind == "restore",
                                                         AuditCheckpoint.id > checkpoint_id)
                           .order_by(AuditCheckpoint.id)).scalars().all()
    declared: list[dict[str, Any]] = []
    for row in rows:
        detail = detail_of(row)
        restored = detail.get("restored_head") or {}
        replaced = detail.get("replaced_head")
        lost = None
        if replaced and int(replaced["last_event_id"]) > int(restored["last_event_id"]):
            lost = {"from_event_id": int(restored["last_event_id"]) + 1,
                    "through_event_id": int(replaced["last_event_id"])}
        declared.append({
            "restored_at": format_timestamp(row.created_at),
            "backup_id": detail.get("backup_id"), "backup_created_at": detail.get("backup_created_at"),
            "backup_manifest_sha256": detail.get("backup_manifest_sha256"),
            "restored_head": {"last_event_id": int(restored["last_event_id"]),
                              "last_hash": str(restored["last_hash"])},
            "replaced_head": ({"last_event_id": int(replaced["last_event_id"]), "last_hash": str(replaced["last_hash"])}
                              if replaced else None),
            "not_in_trail": lost,
        })
    return tuple(declared)


def _purge_anchor(session: Session) -> str:
    row = session.execute(select(AuditCheckpoint).where(AuditCheckpoint.kind == "purge")
                          .order_by(AuditCheckpoint.id.desc()).limit(1)).scalar_one_or_none()
    if row is None:
        raise VerifyFailed("events were purged without a signed purge record: run `vigatra audit verify`")
    return str(detail_of(row)["last_removed_hash"])


def _hash_at(session: Session, event_id: int, purged_through: int) -> str:
    """The hash an export starting after ``event_id`` continues from."""
    if event_id == 0:
        return GENESIS
    if event_id == purged_through:
        return _purge_anchor(session)
    found = session.execute(select(AuditEvent.hash).where(AuditEvent.id == event_id)).scalar_one_or_none()
    if found is None:
        raise VerifyFailed(f"event {event_id} is missing from the chain: run `vigatra audit verify`", event_id=event_id)
    return str(found)


def _plan(session: Session, since: dt.datetime | None, until: dt.datetime | None) -> _Plan:
    head = session.execute(select(AuditChainHead).where(AuditChainHead.id == HEAD_ID)).scalar_one()
    purged, last = int(head.purged_through_id), int(head.last_id)
    if since is None and until is None:
        latest = _latest_series_checkpoint(session)
        previous = latest[1] if latest is not None else None
        restores = restores_since(session, latest[0] if latest is not None else 0)
        after = int(previous["through_event_id"]) if previous else 0
        gap = None
        if after < purged:
            gap = {"from_event_id": after + 1, "through_event_id": purged}
            after = purged
        first_prev = _hash_at(session, after, purged)
        if previous and gap is None and previous.get("last_hash") != first_prev:
            raise VerifyFailed(f"event {after} no longer has the hash the previous export recorded: the chain was "
                               "rewritten; run `vigatra audit verify`", event_id=after)
        return _Plan("incremental", after, last, first_prev, None, None,
                     str(previous["manifest_sha256"]) if previous else None, gap, restores)
    if since is not None and until is not None and until <= since:
        raise Invalid("--to must be later than --from", field="to")
    flt = AuditFilter(since=since, until=until, after_id=purged)
    bounds = cast("Select[Any]", select(func.min(AuditEvent.id), func.max(AuditEvent.id)))
    low, high = session.execute(flt.apply(bounds)).one()
    if low is None:
        raise Invalid("no audit events in that time range (after purges)", field="from")
    after = int(low) - 1
    return _Plan("range", after, int(high), _hash_at(session, after, purged), since, until, None, None)


def _compact(value: dt.datetime | None, default: str) -> str:
    return value.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ") if value is not None else default


def _directory_name(appliance_id: str, plan: _Plan, created: dt.datetime) -> str:
    base = _SAFE_NAME.sub("_", appliance_id) or "appliance"
    if plan.mode == "incremental":
        span = (f"events-{plan.after_id + 1}-{plan.through_id}" if plan.through_id > plan.after_id
                else f"events-none-after-{plan.after_id}-{_compact(created, '')}")
    else:
        span = f"{_compact(plan.since, 'start')}-{_compact(plan.until, 'end')}"
    return f"{base}_{span}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems cannot fsync a directory; the files themselves were synced
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _create(path: Path) -> Any:
    """A new file only its owner can read (the trail names people, addresses and what they looked at;
    removable media are often mounted for everyone). Refuses an existing file or a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.fdopen(os.open(path, flags, 0o600), "wb")


def _write_file(path: Path, data: bytes) -> str:
    with _create(path) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return hashlib.sha256(data).hexdigest()


@dataclass
class _Stream:
    """What went into the CSV (row count, first/last id and hash: the manifest names them)."""

    rows: int = 0
    first_id: int | None = None
    first_hash: str | None = None
    last_id: int | None = None
    last_hash: str | None = None

    def add(self, part: CsvPart) -> None:
        if not part.rows:
            return
        if self.first_id is None:
            self.first_id, self.first_hash = part.first_id, part.first_hash
        self.last_id, self.last_hash = part.last_id, part.last_hash
        self.rows += part.rows


def _write_csv(store: Store, plan: _Plan, path: Path) -> tuple[str, int, _Stream]:
    digest = hashlib.sha256()
    size = 0
    stream = _Stream()
    parts = export_csv(store, AuditFilter(after_id=plan.after_id, through_id=plan.through_id))
    # closing(): a failed write (disk full) stops the export's worker processes before the cleanup runs
    with contextlib.closing(parts), _create(path) as handle:
        for part in parts:
            digest.update(part.data)
            size += len(part.data)
            handle.write(part.data)
            stream.add(part)
        handle.flush()
        os.fsync(handle.fileno())
    return digest.hexdigest(), size, stream


def _manifest(appliance_id: str, signer: Signer, plan: _Plan, stream: _Stream, created: dt.datetime,
              files: dict[str, dict[str, Any]]) -> bytes:
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "chain_version": CHAIN_VERSION,
        "appliance_id": appliance_id,
        "created_at": format_timestamp(created),
        "mode": plan.mode,
        "range": {"from": format_timestamp(plan.since) if plan.since else None,
                  "to": format_timestamp(plan.until) if plan.until else None},
        "after_event_id": plan.after_id,
        "through_event_id": stream.last_id if stream.last_id is not None else plan.after_id,
        "row_count": stream.rows,
        "first_event_id": stream.first_id,
        "first_event_hash": stream.first_hash,
        "first_prev_hash": plan.first_prev_hash,
        "last_event_id": stream.last_id,
        "last_hash": stream.last_hash if stream.last_hash is not None else plan.first_prev_hash,
        "previous_manifest_sha256": plan.previous_manifest,
        "purged_gap": plan.purged_gap,
        "public_key_id": signer.key_id,
        "columns": list(CSV_COLUMNS),
        "files": files,
    }
    if plan.restores:  # only exports after a restore carry it: every other manifest is as before
        manifest["restores"] = list(plan.restores)
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")


def export_to_media(store: Store, signer: Signer, *, appliance_id: str, data_dir: Path | str, dest: Path | str,
                    since: dt.datetime | None = None, until: dt.datetime | None = None,
                    record: AuditRecord | None = None, now: dt.datetime | None = None) -> ExportResult:
    """Write one export under ``dest``, verify it, and record it (event + signed checkpoint)."""
    if not appliance_id:
        raise Invalid("appliance_id is not set in the configuration (run `vigatra init`)")
    base_record = record or AuditRecord(action="audit.export", actor_type="system")
    created = truncate_ms(now or utcnow())
    target = Path(dest)
    written: Path | None = None
    try:  # from here on every failure is audited, including a refused destination or a broken chain
        target = check_destination(dest, data_dir)
        with store.read() as session:
            plan = _plan(session, since, until)
        name = _directory_name(appliance_id, plan, created)
        final = target / name
        suffix = 2
        while final.exists():
            final = target / f"{name}-{suffix}"
            suffix += 1
        partial = target / f".{final.name}.partial-{secrets.token_hex(4)}"
        try:
            partial.mkdir(mode=0o700)
        except OSError as exc:
            raise ExportFailed(f"cannot write to {target}: {exc.strerror or exc}") from None
        written = partial
        csv_sha, csv_size, stream = _write_csv(store, plan, partial / CSV_NAME)
        reached = stream.last_id if stream.last_id is not None else plan.after_id
        if reached != plan.through_id:
            raise VerifyFailed(f"events {reached + 1}..{plan.through_id} are missing from the trail; run "
                               "`vigatra audit verify`", event_id=reached + 1)
        pem = signer.public_pem.encode("ascii")
        files = {CSV_NAME: {"sha256": csv_sha, "bytes": csv_size},
                 PUBLIC_KEY_NAME: {"sha256": _write_file(partial / PUBLIC_KEY_NAME, pem), "bytes": len(pem)}}
        manifest = _manifest(appliance_id, signer, plan, stream, created, files)
        manifest_sha = _write_file(partial / MANIFEST_NAME, manifest)
        _write_file(partial / SIGNATURE_NAME, signer.sign(manifest))
        _fsync_dir(partial)
        os.rename(partial, final)
        written = final
        _fsync_dir(target)
        summary = verify_export(final, public_key_pem=signer.public_pem)
        if summary.manifest_sha256 != manifest_sha or summary.rows != stream.rows:
            raise ExportFailed("the export read back differs from what was written")
        detail = {"mode": plan.mode, "manifest_sha256": manifest_sha, "after_event_id": plan.after_id,
                  "through_event_id": summary.through_event_id, "last_hash": summary.last_hash, "rows": stream.rows,
                  "directory": final.name, "previous_manifest_sha256": plan.previous_manifest,
                  "range": summary.manifest["range"]}
        with store.unit_of_work() as session:
            session.execute(select(AuditChainHead).where(AuditChainHead.id == HEAD_ID).with_for_update()).one()
            if plan.mode == "incremental":
                latest = latest_series_export(session)
                if (latest["manifest_sha256"] if latest else None) != plan.previous_manifest:
                    raise Conflict("another export finished while this one was written; run the export again")
            append(session, [dataclasses.replace(
                base_record, action="audit.export", resource_type="audit", resource_id=final.name, outcome="success",
                detail=json.dumps({**detail, "dest": str(target)}, sort_keys=True))])
            checkpoint = write_checkpoint(session, signer, "export", appliance_id, detail)
            checkpoint_id = int(checkpoint.id)
    except BaseException as exc:
        if written is not None:
            shutil.rmtree(written, ignore_errors=True)
            with contextlib.suppress(OSError):
                _fsync_dir(target)
        record_failure(store, base_record, action="audit.export", detail={"dest": str(target)}, exc=exc)
        if isinstance(exc, OSError):
            raise ExportFailed(f"export to {target} failed: {exc.strerror or exc}; the partial export was removed "
                               "and nothing was recorded") from None
        raise
    log.info("audit export %s: %s rows", final, stream.rows)
    return ExportResult(final, manifest_sha, plan.mode, stream.rows, stream.first_id, stream.last_id, checkpoint_id)

