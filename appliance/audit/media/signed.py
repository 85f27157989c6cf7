"""Signed directories for removable media other than the audit trail (the examination pack), in the audit
export's format: the files, ``manifest.json`` listing each file's SHA-256 and size (``files``), the raw Ed25519
signature over the manifest's exact bytes in ``manifest.sig`` (the audit signing key: checkpoints.Signer), and
``public_key.pem``. The same destination checks (:func:`.writer.check_destination`: exists, writable, not
read-only, outside the data directory), the same all-or-nothing write (a hidden partial directory, fsynced,
read back through the verifier, then renamed into place) and the same owner-only file modes.

Verification is offline (no database, no configuration): the signature, the key (pinned with
``public_key_pem``), every listed file's digest and size, and — unlike an audit export, whose directory a
later export may share — that the directory holds exactly the listed files: a file added, removed or changed
fails, naming it."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.audit.checkpoints import Signer
from appliance.audit.media.manifest import MANIFEST_NAME, PARTIAL_MARK, PUBLIC_KEY_NAME, SIGNATURE_NAME
from appliance.audit.media.writer import ExportFailed, _create, _fsync_dir, _write_file, check_destination
from appliance.audit.verify import VerifyFailed
from appliance.crypto import load_public_key, public_key_id, verify

_RESERVED = (MANIFEST_NAME, SIGNATURE_NAME, PUBLIC_KEY_NAME)


@dataclass(frozen=True)
class SignedDirectory:
    path: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    key_id: str


def _safe_name(name: str) -> bool:
    return (bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")
            and not name.startswith(".") and "\x00" not in name)


def write_signed_directory(dest: Path | str, data_dir: Path | str, name: str, signer: Signer, fmt: str,
                           manifest: dict[str, Any], files: dict[str, bytes]) -> SignedDirectory:
    """Write ``files`` and their signed manifest as ``dest/name`` (a new directory), verify it, and move it
    into place; on any failure nothing is left behind. Invalid when the destination is refused."""
    target = check_destination(dest, data_dir)
    for file_name in files:
        if not _safe_name(file_name) or file_name in _RESERVED:
            raise ExportFailed(f"refusing to write a file named {file_name!r}")
    final = target / name
    if final.exists():
        raise ExportFailed(f"{final} already exists; choose another destination or remove it")
    partial = target / f".{name}{PARTIAL_MARK}{secrets.token_hex(4)}"
    try:
        partial.mkdir(mode=0o700)
    except OSError as exc:
        raise ExportFailed(f"cannot write to {target}: {exc.strerror or exc}") from None
    try:
        listed: dict[str, dict[str, Any]] = {}
        for file_name, data in sorted(files.items()):
            listed[file_name] = {"sha256": _write_file(partial / file_name, data), "bytes": len(data)}
        pem = signer.public_pem.encode("ascii")
        listed[PUBLIC_KEY_NAME] = {"sha256": _write_file(partial / PUBLIC_KEY_NAME, pem), "bytes": len(pem)}
        body = {**manifest, "format": fmt, "public_key_id": signer.key_id, "files": listed}
        encoded = (json.dumps(body, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")
        _write_file(partial / MANIFEST_NAME, encoded)
        with _create(partial / SIGNATURE_NAME) as handle:
            handle.write(signer.sign(encoded))
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(partial)
        verify_signed_directory(partial, fmt, public_key_pem=signer.public_pem)
        os.rename(partial, final)
        _fsync_dir(target)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, OSError):
            raise ExportFailed(f"writing to {target} failed: {exc.strerror or exc}; nothing was left behind") from None
        raise
    return verify_signed_directory(final, fmt, public_key_pem=signer.public_pem)


def _fail(path: Path, message: str) -> VerifyFailed:
    return VerifyFailed(f"{path}: {message}")


def _sha256(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def verify_signed_directory(path: Path | str, fmt: str, *, public_key_pem: str | None = None) -> SignedDirectory:
    """Verify a signed directory offline; raise VerifyFailed naming the first file that does not verify."""
    folder = Path(path)
    if not folder.is_dir():
        raise _fail(folder, "is not a directory")
    for name in _RESERVED:
        if not (folder / name).is_file():
            raise _fail(folder, f"{name} is missing")
    manifest_bytes = (folder / MANIFEST_NAME).read_bytes()
    included = (folder / PUBLIC_KEY_NAME).read_bytes()
    try:
        key_id = public_key_id(included)
    except ValueError as exc:
        raise _fail(folder, f"{PUBLIC_KEY_NAME}: {exc}") from None
    if public_key_pem is not None:
        expected = public_key_id(load_public_key(public_key_pem))
        if expected != key_id:
            raise _fail(folder, f"signed with key {key_id}, not with the expected key {expected}")
    if not verify(included, manifest_bytes, (folder / SIGNATURE_NAME).read_bytes()):
        raise _fail(folder, f"{SIGNATURE_NAME} does not verify: {MANIFEST_NAME} was altered or swapped")
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        raise _fail(folder, f"{MANIFEST_NAME} is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        raise _fail(folder, f"{MANIFEST_NAME} is not a {fmt} manifest")
    if manifest.get("public_key_id") != key_id:
        raise _fail(folder, f"the manifest names key {manifest.get('public_key_id')} but {PUBLIC_KEY_NAME} is {key_id}")
    files = manifest.get("files")
    if not isinstance(files, dict) or PUBLIC_KEY_NAME not in files:
        raise _fail(folder, f"the manifest does not list {PUBLIC_KEY_NAME}")
    for name, info in sorted(files.items()):
        if not isinstance(name, str) or not _safe_name(name):
            raise _fail(folder, f"the manifest lists a file outside the directory: {name!r}")
        if not (folder / name).is_file() or (folder / name).is_symlink():
            raise _fail(folder, f"{name} is missing")
        digest, size = _sha256(folder / name)
        if not isinstance(info, dict) or digest != info.get("sha256") or size != info.get("bytes"):
            raise _fail(folder, f"{name}: SHA-256 or size does not match the manifest (the file was altered)")
    present = {entry.name for entry in folder.iterdir()}
    extra = sorted(present - set(files) - {MANIFEST_NAME, SIGNATURE_NAME})
    if extra:
        raise _fail(folder, f"{extra[0]} is not listed in the manifest (a file was added)")
    return SignedDirectory(folder, manifest, hashlib.sha256(manifest_bytes).hexdigest(), key_id)
