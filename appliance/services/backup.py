"""Encrypted, signed, online backups of the appliance, and their verification.

A backup is a directory ``vigatra-backup-<UTC time>-<id>/`` (mode 0700, every file 0600)::

    manifest.json   what is inside: appliance id, time, version, schema revision, the audit chain head
                    the snapshot holds, the wrapped backup key, SHA-256 and size of every file
    manifest.sig    raw Ed25519 signature over manifest.json's exact bytes (the audit signing key)
    public_key.pem  that key's public half
    database.enc    the database snapshot (store/dump.py), encrypted (crypto/stream.py)
    config.enc      the configuration file (it holds no secrets), encrypted

Keys: each backup has its own random 256-bit key, wrapped by the key provider exactly like a data
key (``KeyProvider.wrap``, context ``vigatra/backup/<id>``; inside the HSM for pkcs11). The KEK is
never written: a backup opens only where the KEK it was made under is available, and the KEK must be
kept separately (docs/OPERATIONS.md). The sealed venue secrets inside the snapshot stay sealed.

Consistency with the audit trail: before the snapshot the backup appends a ``backup.create`` event
and a signed ``backup`` checkpoint in one transaction, so the snapshot itself records that it was
taken and which head was signed; the manifest names the head the snapshot holds (read from the
snapshot, never from the live database). Writing is all-or-nothing: files go to a hidden
``.partial`` directory, are fsynced, renamed into place, then re-read and verified.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from appliance.audit.chain import format_timestamp
from appliance.audit.checkpoints import Signer, signer_from, write_checkpoint
from appliance.audit.writer import AuditRecord, append, record_failure
from appliance.crypto import KeyProvider, load_public_key, public_key_id, verify
from appliance.crypto.stream import KEY_LEN, EncryptingWriter, decrypt_stream
from appliance.errors import IntegrityFailure, Invalid, KeyProviderError, VigatraError
from appliance.settings import Settings
from appliance.store.base import utcnow
from appliance.store.dump import SnapshotInfo, dump_postgres, snapshot_sqlite
from appliance.store.session import Store

log = logging.getLogger(__name__)

FORMAT = "vigatra-backup"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
PUBLIC_KEY_NAME = "public_key.pem"
DATABASE_NAME = "database.enc"
CONFIG_NAME = "config.enc"
NAME_PREFIX = "vigatra-backup-"
_NAME = re.compile(r"^vigatra-backup-\d{8}T\d{6}Z-[0-9a-f]{8}$")
ORIGINS = ("manual", "scheduled", "upgrade", "restore")


class BackupFailed(VigatraError):
    """The backup could not be written; nothing was left behind."""

    code = "backup_failed"


def key_context(backup_id: str) -> bytes:
    return f"vigatra/backup/{backup_id}".encode("ascii")


def file_context(backup_id: str, name: str) -> bytes:
    return f"vigatra-backup/{backup_id}/{name}".encode("ascii")


# -------------------------------------------------------------------------------------------------
# Writing


def check_destination(dest: Path | str, data_dir: Path | str, *, allow_inside_data: bool = False) -> Path:
    raw = Path(dest)
    if not raw.is_dir():
        raise Invalid(f"backup destination {raw} does not exist or is not a directory", field="dest")
    resolved = raw.resolve(strict=True)
    data = Path(data_dir).resolve()
    if not allow_inside_data and (resolved == data or data in resolved.parents):
        raise Invalid(f"refusing to back up into the data directory {data}: a backup must survive losing it",
                      field="dest")
    if not os.access(resolved, os.W_OK | os.X_OK):
        raise Invalid(f"backup destination {raw} is not writable by this user (uid {os.geteuid()})", field="dest")
    return resolved


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the files themselves were synced
    finally:
        os.close(fd)


@contextlib.contextmanager
def _new_file(path: Path) -> Iterator[BinaryIO]:
    """A new file, mode 0600 whatever the umask, fsynced when the block ends."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def _digest_entry(digests: Any) -> dict[str, Any]:
    return {"sha256": digests.cipher.hexdigest(), "size": digests.cipher_size,
            "plaintext_sha256": digests.plain.hexdigest(), "plaintext_size": digests.plain_size}


@dataclass(frozen=True)
class BackupResult:
    path: Path
    backup_id: str
    created_at: dt.datetime
    snapshot: SnapshotInfo
    size: int

    def line(self) -> str:
        head = self.snapshot.head
        return (f"backup {self.path} ({self.snapshot.dialect}, schema {self.snapshot.revision}, audit head event "
                f"{head.last_event_id}, {self.size} bytes) written and verified")


def _snapshot_into(store: Store, settings: Settings, writer: EncryptingWriter, backup_id: str) -> SnapshotInfo:
    if store.dialect == "sqlite":
        # The online backup API writes to a file. The copy sits next to the live database, in the data
        # directory (mode 0700, the same protection as the database itself) only while it is encrypted.
        temp = settings.data_dir / f".backup-{backup_id}.db"
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        try:
            info = snapshot_sqlite(store.engine, temp)
            with temp.open("rb") as source:
                while block := source.read(1 << 20):
                    writer.write(block)
            return info
        finally:
            for leftover in (temp, temp.with_name(temp.name + "-journal")):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
    return dump_postgres(store.engine, writer)  # type: ignore[arg-type]  # a write-only file object


def _record(action: str, actor_label: str, detail: dict[str, Any], outcome: str = "success") -> AuditRecord:
    return AuditRecord(action=action, actor_type="system", resource_type="backup", resource_id=detail.get("id", ""),
                       ip_address="local", method="CLI" if actor_label.startswith("cli:") else "JOB",
                       path=action, user_agent=actor_label, outcome=outcome,
                       detail=json.dumps(detail, sort_keys=True))


def create_backup(store: Store, settings: Settings, provider: KeyProvider, signer: Signer, *, dest: Path | str,
                  origin: str = "manual", actor_label: str = "system", allow_inside_data: bool = False
                  ) -> BackupResult:
    """Snapshot the live database into an encrypted, signed backup directory under ``dest``."""
    if origin not in ORIGINS:
        raise ValueError(f"unknown backup origin {origin!r}")
    target_dir = check_destination(dest, settings.data_dir, allow_inside_data=allow_inside_data)
    backup_id = uuid.uuid4().hex
    created = utcnow()
    name = f"{NAME_PREFIX}{created:%Y%m%dT%H%M%SZ}-{backup_id[:8]}"
    final = target_dir / name
    partial = target_dir / f".{name}.partial"
    detail = {"id": backup_id, "dest": str(target_dir), "origin": origin}
    try:
        backup_key = os.urandom(KEY_LEN)
        wrapped = provider.wrap(backup_key, context=key_context(backup_id))
        kek_id = provider.kek_id()
        with store.unit_of_work() as session:
            append(session, [_record("backup.create", actor_label, detail)])
            write_checkpoint(session, signer, "backup", settings.appliance_id, {"backup_id": backup_id})
        partial.mkdir(mode=0o700)
        files: dict[str, dict[str, Any]] = {}
        with _new_file(partial / DATABASE_NAME) as sink:
            writer = EncryptingWriter(backup_key, sink, context=file_context(backup_id, DATABASE_NAME))
            snapshot = _snapshot_into(store, settings, writer, backup_id)
            files[DATABASE_NAME] = _digest_entry(writer.close())
        config_bytes = _config_bytes(settings)
        with _new_file(partial / CONFIG_NAME) as sink:
            writer = EncryptingWriter(backup_key, sink, context=file_context(backup_id, CONFIG_NAME))
            writer.write(config_bytes)
            files[CONFIG_NAME] = _digest_entry(writer.close())
        from appliance import __version__

        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "backup_id": backup_id,
            "appliance_id": settings.appliance_id, "created_at": format_timestamp(created), "origin": origin,
            "vigatra_version": __version__,
            "database": {"dialect": snapshot.dialect, "format": snapshot.format, "schema_revision": snapshot.revision,
                         "rows": snapshot.rows},
            "audit_head": snapshot.head.as_dict(),
            "key": {"provider": provider.name, "kek_id": kek_id, "context": key_context(backup_id).decode("ascii"),
                    "wrapped_key": base64.b64encode(wrapped).decode("ascii")},
            "signing_key_id": signer.key_id,
            "files": files,
        }
        manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8") + b"\n"
        with _new_file(partial / MANIFEST_NAME) as handle:
            handle.write(manifest_bytes)
        with _new_file(partial / SIGNATURE_NAME) as handle:
            handle.write(signer.sign(manifest_bytes))
        with _new_file(partial / PUBLIC_KEY_NAME) as handle:
            handle.write(signer.public_pem.encode("ascii"))
        _fsync_dir(partial)
        partial.rename(final)
        _fsync_dir(target_dir)
        verify_backup(final, provider=provider, public_key_pem=signer.public_pem)
    except BaseException as exc:
        for leftover in (partial, final):
            shutil.rmtree(leftover, ignore_errors=True)
        if isinstance(exc, Exception):
            record_failure(store, _record("backup.create", actor_label, detail), action="backup.create",
                           detail=detail, exc=exc)
        if isinstance(exc, (VigatraError, KeyboardInterrupt, SystemExit)):
            raise
        if isinstance(exc, OSError):
            raise BackupFailed(f"backup to {target_dir} failed: {exc.strerror or exc}") from None
        raise
    size = sum(entry["size"] for entry in files.values()) + len(manifest_bytes)
    log.info("backup %s written to %s", backup_id, final)
    return BackupResult(final, backup_id, created, snapshot, size)


def _config_bytes(settings: Settings) -> bytes:
    source = Path(settings.source)
    try:
        return source.read_bytes() if source.is_file() else b""
    except OSError:
        return b""


# -------------------------------------------------------------------------------------------------
# Reading and verifying


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    key_id: str
    decrypted: bool
    notes: tuple[str, ...] = field(default=())

    @property
    def backup_id(self) -> str:
        return str(self.manifest["backup_id"])

    @property
    def created_at(self) -> str:
        return str(self.manifest["created_at"])

    @property
    def head(self) -> dict[str, Any]:
        return dict(self.manifest["audit_head"])

    def lines(self) -> list[str]:
        db = self.manifest["database"]
        head = self.head
        contents = ("contents decrypted and match their hashes" if self.decrypted else
                    "contents NOT decrypted (no key provider): only hashes and signature checked")
        return [f"backup {self.path.name} valid: appliance {self.manifest['appliance_id']}, made "
                f"{self.created_at} by Vigatra {self.manifest['vigatra_version']} ({self.manifest['origin']})",
                f"  database {db['dialect']} at schema {db['schema_revision']}; audit head event "
                f"{head['last_event_id']} hash {head['last_hash'][:16]}...",
                f"  signed by {self.key_id}; {contents}", *(f"  note: {n}" for n in self.notes)]


def _fail(path: Path, message: str) -> IntegrityFailure:
    return IntegrityFailure(f"backup {path}: {message}")


def read_manifest(path: Path | str, *, public_key_pem: str | None = None) -> tuple[dict[str, Any], str, str]:
    """The manifest, its SHA-256 and the signing key id, after its signature verified."""
    directory = Path(path)
    if not directory.is_dir():
        raise Invalid(f"{directory} is not a backup directory", field="source")
    try:
        manifest_bytes = (directory / MANIFEST_NAME).read_bytes()
        signature = (directory / SIGNATURE_NAME).read_bytes()
        embedded_pem = (directory / PUBLIC_KEY_NAME).read_text(encoding="ascii")
    except FileNotFoundError as exc:
        raise _fail(directory, f"{Path(str(exc.filename)).name} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(directory, f"cannot be read ({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    try:
        load_public_key(embedded_pem)
    except ValueError:
        raise _fail(directory, f"{PUBLIC_KEY_NAME} is not an Ed25519 public key") from None
    pem = public_key_pem or embedded_pem
    if public_key_pem is not None and public_key_id(public_key_pem) != public_key_id(embedded_pem):
        raise _fail(directory, f"it was signed by key {public_key_id(embedded_pem)}, not by this appliance's key "
                               f"{public_key_id(public_key_pem)} (made under another KEK, or forged)")
    if not verify(pem, manifest_bytes, signature):
        raise _fail(directory, "the manifest's signature does not verify (the manifest was changed)")
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        raise _fail(directory, "the manifest is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _fail(directory, "not a Vigatra backup manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise _fail(directory, f"backup format version {manifest.get('format_version')} is not supported by this "
                               "version of Vigatra")
    if manifest.get("signing_key_id") != public_key_id(pem):
        raise _fail(directory, "the manifest names another signing key than the one that signed it")
    return manifest, hashlib.sha256(manifest_bytes).hexdigest(), public_key_id(pem)


def _check_hashes(directory: Path, manifest: dict[str, Any]) -> None:
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != {DATABASE_NAME, CONFIG_NAME}:
        raise _fail(directory, "the manifest does not list the expected files")
    present = {p.name for p in directory.iterdir()}
    extra = present - {*files, MANIFEST_NAME, SIGNATURE_NAME, PUBLIC_KEY_NAME}
    if extra:
        raise _fail(directory, f"holds files the manifest does not list: {', '.join(sorted(extra))}")
    for name, entry in files.items():
        digest = hashlib.sha256()
        size = 0
        try:
            with (directory / name).open("rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
                    size += len(block)
        except FileNotFoundError:
            raise _fail(directory, f"{name} is missing") from None
        if size != entry.get("size") or digest.hexdigest() != entry.get("sha256"):
            raise _fail(directory, f"{name} does not match its SHA-256 in the manifest (changed or truncated)")


def unwrap_backup_key(manifest: dict[str, Any], provider: KeyProvider, directory: Path) -> bytes:
    key = manifest.get("key") or {}
    try:
        wrapped = base64.b64decode(str(key.get("wrapped_key", "")), validate=True)
    except ValueError:
        raise _fail(directory, "the wrapped backup key is not base64") from None
    try:
        return provider.unwrap(wrapped, context=key_context(str(manifest["backup_id"])))
    except KeyProviderError as exc:
        raise KeyProviderError(f"backup {directory.name} was made under KEK {key.get('kek_id')} and cannot be "
                               f"opened with the configured one: {exc.message}") from None


def open_file(directory: Path, manifest: dict[str, Any], key: bytes, name: str) -> Iterator[bytes]:
    """The decrypted chunks of one file of the backup (each authenticated before it is yielded)."""
    with (directory / name).open("rb") as handle:
        yield from decrypt_stream(key, handle, context=file_context(str(manifest["backup_id"]), name))


def verify_backup(path: Path | str, *, provider: KeyProvider | None, public_key_pem: str | None = None
                  ) -> BackupSummary:
    """Signature, file hashes and, with a key provider, the decrypted contents of every file."""
    directory = Path(path)
    manifest, manifest_sha, key_id = read_manifest(directory, public_key_pem=public_key_pem)
    _check_hashes(directory, manifest)
    notes: list[str] = []
    if public_key_pem is None:
        notes.append("the signing key was not pinned (give the appliance's configuration, or --public-key)")
    if provider is None:
        return BackupSummary(directory, manifest, manifest_sha, key_id, False, tuple(notes))
    key = unwrap_backup_key(manifest, provider, directory)
    for name, entry in manifest["files"].items():
        digest = hashlib.sha256()
        size = 0
        for chunk in open_file(directory, manifest, key, name):
            digest.update(chunk)
            size += len(chunk)
        if digest.hexdigest() != entry.get("plaintext_sha256") or size != entry.get("plaintext_size"):
            raise _fail(directory, f"{name} decrypts, but not to the contents the manifest names")
    return BackupSummary(directory, manifest, manifest_sha, key_id, True, tuple(notes))


# -------------------------------------------------------------------------------------------------
# Scheduled backups and retention


def list_backups(dest: Path | str) -> list[Path]:
    """Backup directories directly under ``dest``, oldest first (by the time in their name)."""
    directory = Path(dest)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and _NAME.match(p.name))


def prune_backups(dest: Path | str, *, appliance_id: str, keep: int, origin: str = "scheduled") -> list[Path]:
    """Delete the oldest of this appliance's ``origin`` backups beyond the newest ``keep``.

    Only directories whose manifest names this appliance and origin are counted or deleted: backups
    made by hand, by install.sh or of another appliance in the same place are left alone.
    """
    ours: list[Path] = []
    for candidate in list_backups(dest):
        try:
            manifest = json.loads((candidate / MANIFEST_NAME).read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and manifest.get("appliance_id") == appliance_id \
                and manifest.get("origin") == origin:
            ours.append(candidate)
    removed = ours[:-keep] if keep > 0 else []
    for old in removed:
        shutil.rmtree(old)
        log.info("deleted old backup %s (keeping %d)", old, keep)
    return removed


def scheduled_backup(store: Store, settings: Settings, provider: KeyProvider) -> BackupResult | None:
    """The scheduler job: one backup into ``backup.dest``, then the retention count applied."""
    dest = settings.backup.dest
    if not dest:
        return None
    result = create_backup(store, settings, provider, signer_from(provider), dest=dest, origin="scheduled",
                           actor_label="scheduler")
    prune_backups(dest, appliance_id=settings.appliance_id, keep=settings.backup.retention_count)
    return result
