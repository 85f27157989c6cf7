"""Audit exports to removable media, and their offline verification (no database, another machine).

Why a format of its own: a regulator receives a USB stick, not database access. Each export is a
directory holding the CSV (the API's columns and formula escaping), ``manifest.json`` (range, row
count, first/last event id and hash, the ``prev_hash`` the range continues from, the SHA-256 of
every file, the predecessor's manifest SHA-256), ``manifest.sig`` (raw 64-byte Ed25519 signature
over manifest.json's exact bytes — ``openssl pkeyutl -verify -rawin`` checks it too) and
``public_key.pem``. The chain inside the CSV is recomputed from the cells, so a changed byte, a
swapped manifest or a tampered database range all fail ``vigatra audit verify DIR``.

Series: an export without ``--from/--to`` is *incremental* — it continues exactly where the
previous incremental export ended (its first ``prev_hash`` is the previous export's last hash,
its manifest names the previous manifest's SHA-256), so a directory holding a series shows a
dropped, swapped or reordered export. ``--from/--to`` exports are one-off extracts outside the
series; their events are still a contiguous id range, so their chain verifies from the first
event's ``prev_hash``.

Writing is all-or-nothing: files go to a hidden ``.partial`` directory, are fsynced, renamed into
place, re-read and verified; only then is the export recorded (an ``audit.export`` event and a
signed export checkpoint, in one transaction). Any failure — disk full, read-only medium, a chain
that does not verify, a concurrent export — removes what was written and claims nothing.

If events were purged before any incremental export covered them, the next incremental export
declares the hole (``purged_gap``, signed in its manifest) instead of silently breaking the series.
Writing and reading live in this one module so the format is defined in one place.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import errno
import hashlib
import itertools
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
from appliance.audit.export import CSV_COLUMNS, AuditFilter, CsvPart, export_csv, unescape_cell
from appliance.audit.verify import VerifyFailed, fast_event_hash
from appliance.audit.writer import AuditRecord, append, record_failure
from appliance.crypto import load_public_key, public_key_id, verify
from appliance.errors import Conflict, Invalid, VigatraError
from appliance.store.base import utcnow
from appliance.store.models import AuditChainHead, AuditCheckpoint, AuditEvent
from appliance.store.session import Store

log = logging.getLogger(__name__)

FORMAT = "vigatra-audit-export"
FORMAT_VERSION = 1
CSV_NAME = "audit.csv"
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
PUBLIC_KEY_NAME = "public_key.pem"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class ExportFailed(VigatraError):
    """The export could not be written; nothing was left behind and nothing was recorded."""

    code = "export_failed"


# -------------------------------------------------------------------------------------------------
# Writing


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


def latest_series_export(session: Session) -> dict[str, Any] | None:
    """Detail of the newest incremental export checkpoint (the series' predecessor), if any."""
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
                    return detail
        if len(rows) < 100:
            return None
        after = int(rows[-1].id)


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
        previous = latest_series_export(session)
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
                     str(previous["manifest_sha256"]) if previous else None, gap)
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


# -------------------------------------------------------------------------------------------------
# Offline verification


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    key_id: str

    @property
    def rows(self) -> int:
        return int(self.manifest["row_count"])

    @property
    def mode(self) -> str:
        return str(self.manifest["mode"])

    @property
    def after_event_id(self) -> int:
        return int(self.manifest["after_event_id"])

    @property
    def through_event_id(self) -> int:
        return int(self.manifest["through_event_id"])

    @property
    def first_prev_hash(self) -> str:
        return str(self.manifest["first_prev_hash"])

    @property
    def last_hash(self) -> str:
        return str(self.manifest["last_hash"])

    @property
    def previous(self) -> str | None:
        value = self.manifest.get("previous_manifest_sha256")
        return str(value) if value else None

    def line(self) -> str:
        span = (f"events {self.manifest['first_event_id']}..{self.manifest['last_event_id']}" if self.rows
                else f"no events after {self.after_event_id}")
        return f"{self.path.name}: {self.mode} export of {self.rows} rows ({span}), signed by key {self.key_id}"


class _Fail(VerifyFailed):
    def __init__(self, path: Path, message: str, *, event_id: int | None = None) -> None:
        super().__init__(f"{path}: {message}", event_id=event_id)


def _sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _read_manifest(path: Path, public_key_pem: str | None) -> tuple[dict[str, Any], str, str]:
    for name in (MANIFEST_NAME, SIGNATURE_NAME, PUBLIC_KEY_NAME):
        if not (path / name).is_file():
            raise _Fail(path, f"{name} is missing")
    manifest_bytes = (path / MANIFEST_NAME).read_bytes()
    included = (path / PUBLIC_KEY_NAME).read_bytes()
    try:
        key_id = public_key_id(included)
    except ValueError as exc:
        raise _Fail(path, f"{PUBLIC_KEY_NAME}: {exc}") from None
    if public_key_pem is not None:
        expected = public_key_id(load_public_key(public_key_pem))
        if expected != key_id:
            raise _Fail(path, f"signed with key {key_id}, not with the expected key {expected}")
    if not verify(included, manifest_bytes, (path / SIGNATURE_NAME).read_bytes()):
        raise _Fail(path, f"{SIGNATURE_NAME} does not verify: {MANIFEST_NAME} was altered or swapped")
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        raise _Fail(path, f"{MANIFEST_NAME} is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _Fail(path, f"{MANIFEST_NAME} is not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("chain_version") != CHAIN_VERSION:
        raise _Fail(path, f"unsupported export format {manifest.get('format_version')}/chain "
                          f"{manifest.get('chain_version')} (this verifier reads {FORMAT_VERSION}/{CHAIN_VERSION})")
    if manifest.get("public_key_id") != key_id:
        raise _Fail(path, f"the manifest names key {manifest.get('public_key_id')} but {PUBLIC_KEY_NAME} is {key_id}")
    return manifest, hashlib.sha256(manifest_bytes).hexdigest(), key_id


def _check_files(path: Path, manifest: dict[str, Any]) -> None:
    files = manifest.get("files")
    if not isinstance(files, dict) or CSV_NAME not in files or PUBLIC_KEY_NAME not in files:
        raise _Fail(path, f"the manifest does not list {CSV_NAME} and {PUBLIC_KEY_NAME}")
    for name, info in files.items():
        if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
            raise _Fail(path, f"the manifest lists a file outside the export: {name!r}")
        if not (path / name).is_file():
            raise _Fail(path, f"{name} is missing")
        digest, size = _sha256_file(path / name)
        if not isinstance(info, dict) or digest != info.get("sha256") or size != info.get("bytes"):
            raise _Fail(path, f"{name}: SHA-256 or size does not match the manifest (the file was altered)")


# The CSV columns this reader unpacks by position (export.CSV_COLUMNS of format version 1).
_V1_COLUMNS = ("user_id", "action", "resource_type", "resource_id", "ip_address", "timestamp", "id", "actor_type",
               "api_key_id", "request_id", "method", "path", "status", "user_agent", "outcome", "detail", "prev_hash",
               "hash")


def _check_csv(path: Path, manifest: dict[str, Any]) -> None:
    """Recompute the chain from the cells: unescape, empty nullable integers -> None, hash, link."""
    if manifest.get("columns") != list(_V1_COLUMNS) or tuple(CSV_COLUMNS) != _V1_COLUMNS:
        raise _Fail(path, "the manifest's columns are not this format's columns")
    u = unescape_cell
    expected_prev = str(manifest["first_prev_hash"])
    after = int(manifest["after_event_id"])
    expect, count = after + 1, 0
    first_hash: str | None = None
    with open(path / CSV_NAME, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, strict=True)
        if next(reader, None) != list(_V1_COLUMNS):
            raise _Fail(path, f"{CSV_NAME}: the header is not {','.join(_V1_COLUMNS)}")
        for line, raw in enumerate(reader, start=2):
            try:
                (uid, ac, rt, rid, ip, ts, i, at, ak, rq, me, pa, st, ua, oc, de, pr, h) = raw
            except ValueError:
                raise _Fail(path, f"{CSV_NAME} line {line}: {len(raw)} cells, expected {len(_V1_COLUMNS)}") from None
            try:
                event_id = int(i)
            except ValueError:
                raise _Fail(path, f"{CSV_NAME} line {line}: id {i!r} is not a number") from None
            if event_id != expect:
                raise _Fail(path, f"event {expect} is missing or out of order (found {event_id})", event_id=expect)
            if pr != expected_prev:
                raise _Fail(path, f"event {event_id}: prev_hash does not match the previous event's hash",
                            event_id=event_id)
            # Only a cell starting with "'" can carry escape_cell's prefix; empty integers are NULL.
            digest = fast_event_hash(
                i, ts, at if at[:1] != "'" else u(at), (uid if uid[:1] != "'" else u(uid)) or None,
                (ak if ak[:1] != "'" else u(ak)) or None, ac if ac[:1] != "'" else u(ac),
                rt if rt[:1] != "'" else u(rt), rid if rid[:1] != "'" else u(rid), ip if ip[:1] != "'" else u(ip),
                rq if rq[:1] != "'" else u(rq), me if me[:1] != "'" else u(me), pa if pa[:1] != "'" else u(pa),
                (st if st[:1] != "'" else u(st)) or None, ua if ua[:1] != "'" else u(ua),
                oc if oc[:1] != "'" else u(oc), de if de[:1] != "'" else u(de), pr)
            if digest != h:
                raise _Fail(path, f"event {event_id}: the row's contents do not match its hash", event_id=event_id)
            if first_hash is None:
                first_hash = h
            expected_prev = h
            expect += 1
            count += 1
    rows = int(manifest["row_count"])
    if count != rows:
        raise _Fail(path, f"{CSV_NAME} holds {count} rows, the manifest says {rows}")
    last_id = expect - 1 if count else None
    if (manifest.get("first_event_id") != (after + 1 if count else None) or manifest.get("last_event_id") != last_id
            or manifest.get("first_event_hash") != first_hash or manifest.get("last_hash") != expected_prev
            or int(manifest["through_event_id"]) != (last_id if last_id is not None else after)):
        raise _Fail(path, "the manifest's first/last event ids or hashes do not match the CSV")


def verify_export(path: Path | str, *, public_key_pem: str | None = None) -> ExportSummary:
    """Verify one export directory offline; raise VerifyFailed with the reason."""
    folder = Path(path)
    manifest, manifest_sha, key_id = _read_manifest(folder, public_key_pem)
    try:
        _check_files(folder, manifest)
        _check_csv(folder, manifest)
    except (KeyError, TypeError, ValueError, csv.Error) as exc:
        raise _Fail(folder, f"malformed export ({type(exc).__name__}: {exc})") from None
    return ExportSummary(folder, manifest, manifest_sha, key_id)


@dataclass(frozen=True)
class MediaReport:
    exports: list[ExportSummary]
    series: list[ExportSummary]

    def lines(self) -> list[str]:
        out = [summary.line() for summary in self.exports]
        if len(self.series) > 1:
            out.append(f"series of {len(self.series)} incremental exports links without a gap: events "
                       f"{self.series[0].after_event_id + 1}..{self.series[-1].through_event_id}")
        rows = sum(s.rows for s in self.exports)
        out.append(f"audit export valid: {len(self.exports)} export(s), {rows} rows")
        return out


def verify_media(path: Path | str, *, public_key_pem: str | None = None) -> MediaReport:
    """Verify one export, or every export in a directory and how the incremental ones link."""
    folder = Path(path)
    if not folder.is_dir():
        raise VerifyFailed(f"{folder} is not a directory")
    if (folder / MANIFEST_NAME).exists():
        single = verify_export(folder, public_key_pem=public_key_pem)
        return MediaReport([single], [single] if single.mode == "incremental" else [])
    found = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                   and (p / MANIFEST_NAME).exists())
    if not found:
        raise VerifyFailed(f"{folder} holds no audit export ({MANIFEST_NAME} not found)")
    exports = [verify_export(p, public_key_pem=public_key_pem) for p in found]
    return MediaReport(exports, _check_series(exports))


def _check_series(exports: list[ExportSummary]) -> list[ExportSummary]:
    appliances = {str(s.manifest["appliance_id"]) for s in exports}
    if len(appliances) > 1:
        raise VerifyFailed(f"the exports come from different appliances: {', '.join(sorted(appliances))}")
    keys = {s.key_id for s in exports}
    if len(keys) > 1:
        raise VerifyFailed(f"the exports are signed by different keys ({', '.join(sorted(keys))}); "
                           "pass --public-key with the appliance's key")
    incremental = [s for s in exports if s.mode == "incremental"]
    if not incremental:
        return []
    by_sha = {s.manifest_sha256: s for s in incremental}
    followers: dict[str, ExportSummary] = {}
    for s in incremental:
        if s.previous in by_sha:
            other = followers.get(s.previous)
            if other is not None:
                raise VerifyFailed(f"{s.path.name} and {other.path.name} both claim to follow "
                                   f"{by_sha[s.previous].path.name}")
            followers[s.previous] = s
    starts = [s for s in incremental if s.previous not in by_sha]
    if len(starts) != 1:
        names = ", ".join(s.path.name for s in starts)
        raise VerifyFailed(f"the series is broken: {names} do not follow any export here — an export between "
                           "them is missing or was replaced")
    ordered = [starts[0]]
    while ordered[-1].manifest_sha256 in followers:
        ordered.append(followers[ordered[-1].manifest_sha256])
    if len(ordered) != len(incremental):
        raise VerifyFailed("the incremental exports do not form one series")
    for before, after in itertools.pairwise(ordered):
        gap = after.manifest.get("purged_gap")
        if gap:
            linked = (int(gap["from_event_id"]) == before.through_event_id + 1
                      and int(gap["through_event_id"]) == after.after_event_id)
        else:
            linked = after.after_event_id == before.through_event_id and after.first_prev_hash == before.last_hash
        if not linked:
            raise VerifyFailed(f"{after.path.name} does not continue {before.path.name}: the series has a gap "
                               f"after event {before.through_event_id}", event_id=before.through_event_id + 1)
    return ordered
