"""Writing an export to removable media: plan the range, write the files all-or-nothing, read them back
through the verifier, then record the export (an ``audit.export`` event and a signed checkpoint)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import threading
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
    PARTIAL_MARK,
    PARTIAL_NAME,
    PUBLIC_KEY_NAME,
    SIGNATURE_NAME,
    UNRECORDED_SUFFIX,
    create_file,
    fsync_dir,
    write_file,
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
    # Termination signals that arrived while the export was being recorded (it completed first).
    held_signals: tuple[str, ...] = ()


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


# The medium's file operations (manifest.py, shared with the examination pack), under this module's names.
_fsync_dir, _create, _write_file = fsync_dir, create_file, write_file


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
    """Write one export under ``dest``, verify it, and record it (event + signed checkpoint).

    The export becomes part of the series only when it is recorded: its files are written and verified
    in a hidden ``.partial`` directory, recorded, and only then renamed into place. An export run first
    tidies what an interrupted one left in ``dest`` (:func:`recover_destination`)."""
    if not appliance_id:
        raise Invalid("appliance_id is not set in the configuration (run `vigatra init`)")
    base_record = record or AuditRecord(action="audit.export", actor_type="system")
    created = truncate_ms(now or utcnow())
    target = Path(dest)
    written: Path | None = None
    recorded = False
    held = HeldSignals()
    lock: int | None = None
    try:  # from here on every failure is audited, including a refused destination or a broken chain
        target = check_destination(dest, data_dir)
        lock = _lock_destination(target)
        tidied = recover_destination(store, appliance_id, target)
        with store.read() as session:
            plan = _plan(session, since, until)
        name = _directory_name(appliance_id, plan, created)
        final = target / name
        suffix = 2
        while final.exists() or (target / f"{final.name}{UNRECORDED_SUFFIX}").exists():
            final = target / f"{name}-{suffix}"
            suffix += 1
        partial = target / f".{final.name}{PARTIAL_MARK}{secrets.token_hex(4)}"
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
        summary = verify_export(partial, public_key_pem=signer.public_pem)
        if summary.manifest_sha256 != manifest_sha or summary.rows != stream.rows:
            raise ExportFailed("the export read back differs from what was written")
        detail = {"mode": plan.mode, "manifest_sha256": manifest_sha, "after_event_id": plan.after_id,
                  "through_event_id": summary.through_event_id, "last_hash": summary.last_hash,
                  "rows": stream.rows, "directory": final.name, "previous_manifest_sha256": plan.previous_manifest,
                  "range": summary.manifest["range"]}
        # From the commit to the rename a termination signal waits: an export that is recorded is
        # never removed, and it is in place before the process stops (or, after SIGKILL, the next
        # run moves it into place: recover_destination).
        with held:
            with store.unit_of_work() as session:
                session.execute(select(AuditChainHead).where(AuditChainHead.id == HEAD_ID).with_for_update()).one()
                if plan.mode == "incremental":
                    latest = latest_series_export(session)
                    if (latest["manifest_sha256"] if latest else None) != plan.previous_manifest:
                        raise Conflict("another export finished while this one was written; run the export again")
                event_detail = {**detail, "dest": str(target)}
                if tidied:
                    event_detail["tidied"] = tidied
                append(session, [dataclasses.replace(
                    base_record, action="audit.export", resource_type="audit", resource_id=final.name,
                    outcome="success", detail=json.dumps(event_detail, sort_keys=True))])
                checkpoint = write_checkpoint(session, signer, "export", appliance_id, detail)
                checkpoint_id = int(checkpoint.id)
            recorded = True
            os.rename(partial, final)
            written = None
            try:
                _fsync_dir(target)
            except OSError as exc:  # recorded and in place; only the rename's durability is in doubt
                log.warning("audit export %s: could not sync %s (%s)", final, target, exc.strerror or exc)
    except BaseException as exc:
        if recorded:  # in the database, not (yet) in place: the next export run moves it there
            raise ExportFailed(f"the export was recorded but could not be moved into place in {target} "
                               f"({getattr(exc, 'strerror', None) or type(exc).__name__}); run the export "
                               "again to finish it") from None
        if written is not None:
            shutil.rmtree(written, ignore_errors=True)
            with contextlib.suppress(OSError):
                _fsync_dir(target)
        record_failure(store, base_record, action="audit.export", detail={"dest": str(target)}, exc=exc)
        if isinstance(exc, OSError):
            raise ExportFailed(f"export to {target} failed: {exc.strerror or exc}; the partial export was removed "
                               "and nothing was recorded") from None
        raise
    finally:
        if lock is not None:
            os.close(lock)  # releases the lock
    log.info("audit export %s: %s rows", final, stream.rows)
    return ExportResult(final, manifest_sha, plan.mode, stream.rows, stream.first_id, stream.last_id, checkpoint_id,
                        tuple(signal.Signals(n).name for n in held.caught))


class ExportInterrupted(ExportFailed):
    """The export was stopped by a signal (SIGTERM, SIGHUP): what it wrote was removed, nothing recorded."""

    def __init__(self, signum: int) -> None:
        name = signal.Signals(signum).name
        super().__init__(f"the export was interrupted by {name}; the partial export was removed and nothing was "
                         "recorded")
        self.signum = signum


class HeldSignals:
    """Holds SIGTERM, SIGINT and SIGHUP while the export is recorded and moved into place: the export
    completes, and the signals caught are reported in its result (``held_signals``) for the caller to act
    on (the CLI says so and exits). Signal handlers run on the main thread only, so in another thread
    (the CLI runs exports on the main thread) it holds nothing."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.caught: list[int] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> HeldSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, lambda number, _frame: self.caught.append(number))
        return self

    def __exit__(self, *_exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()



def _lock_destination(target: Path) -> int:
    """One export at a time into a destination (a lock on the directory itself, so nothing is left on the
    medium): the tidying of an interrupted export must not remove a running one's files. Returns the
    descriptor; closing it releases the lock."""
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Conflict(f"another export to {target} is running; try again when it has finished") from None
    return fd


def recover_destination(store: Store, appliance_id: str, target: Path) -> list[str]:
    """Tidy what interrupted exports of this appliance left in ``target``; returns what was done.

    - a ``.partial`` directory whose export was recorded (the process stopped between recording and
      renaming) is moved into place: it is part of the series;
    - any other ``.partial`` directory of this appliance is removed: it was never part of anything;
    - a complete export of this appliance that the database does not record but whose last event is the
      database's own (an export run stopped between renaming and recording, by an earlier version) is
      renamed ``<name>.unrecorded``: kept, but out of the series, and `vigatra audit verify DIR` says so.
      One whose last event the database does not hold is left where it is: it was written before a
      backup restore (the next export declares the restore) or the database was put back by hand, and
      `vigatra audit verify` explains or refuses the fork; setting it aside would hide that.
    """
    recorded: set[str] = set()
    with store.read() as session:
        for row in session.execute(select(AuditCheckpoint).where(AuditCheckpoint.kind == "export")).scalars():
            with contextlib.suppress(ValueError):  # an unreadable checkpoint records nothing here (verify says why)
                recorded.add(str(detail_of(row).get("manifest_sha256")))
    ours = f".{_SAFE_NAME.sub('_', appliance_id) or 'appliance'}_"
    done: list[str] = []
    for entry in sorted(target.iterdir()):
        if not entry.is_dir() or entry.is_symlink():
            continue
        interrupted = PARTIAL_NAME.fullmatch(entry.name)
        if interrupted is not None and entry.name.startswith(ours):
            sha = _manifest_sha(entry)
            if sha is not None and sha in recorded:
                final = _free_name(target, interrupted["name"])
                os.rename(entry, final)
                done.append(f"moved the recorded export {final.name} into place (its run stopped before it could)")
            else:
                shutil.rmtree(entry)
                done.append(f"removed {entry.name}: an interrupted export that was never recorded")
        elif interrupted is None and not entry.name.startswith(".") and not entry.name.endswith(UNRECORDED_SUFFIX):
            manifest = _manifest_of(entry)
            if (manifest is None or manifest[0].get("appliance_id") != appliance_id or manifest[1] in recorded
                    or not _ends_in_the_trail(store, manifest[0])):
                continue
            aside = _free_name(target, entry.name + UNRECORDED_SUFFIX)
            os.rename(entry, aside)
            done.append(f"renamed {entry.name} to {aside.name}: a complete export the appliance never recorded "
                        "(its run was interrupted), so not part of the series")
    if done:
        _fsync_dir(target)
        for line in done:
            log.warning("audit export to %s: %s", target, line)
    return done


def _ends_in_the_trail(store: Store, manifest: dict[str, Any]) -> bool:
    """Whether the database holds the export's last event, with the hash the export signed."""
    try:
        last_id, last_hash = int(manifest["through_event_id"]), str(manifest["last_hash"])
    except (KeyError, TypeError, ValueError):
        return False
    if not 0 < last_id < 2**63:
        return False
    with store.read() as session:
        held = session.execute(select(AuditEvent.hash).where(AuditEvent.id == last_id)).scalar_one_or_none()
    return held == last_hash


def _manifest_of(folder: Path) -> tuple[dict[str, Any], str] | None:
    try:
        data = (folder / MANIFEST_NAME).read_bytes()
        manifest = json.loads(data)
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None
    return manifest, hashlib.sha256(data).hexdigest()


def _manifest_sha(folder: Path) -> str | None:
    found = _manifest_of(folder)
    return found[1] if found is not None else None


def _free_name(target: Path, name: str) -> Path:
    candidate, suffix = target / name, 2
    while candidate.exists():
        candidate = target / f"{name}-{suffix}"
        suffix += 1
    return candidate
