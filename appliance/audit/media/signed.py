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

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.audit.checkpoints import Signer
from appliance.audit.media.manifest import (
    MANIFEST_NAME,
    PARTIAL_MARK,
    PUBLIC_KEY_NAME,
    SIGNATURE_NAME,
    SIGNED_NAMES,
    MediaFailed,
    check_listed_files,
    fsync_dir,
    read_signed_manifest,
    safe_name,
    write_file,
)
from appliance.audit.media.writer import ExportFailed, check_destination


@dataclass(frozen=True)
class SignedDirectory:
    path: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    key_id: str


def write_signed_directory(dest: Path | str, data_dir: Path | str, name: str, signer: Signer, fmt: str,
                           manifest: dict[str, Any], files: dict[str, bytes]) -> SignedDirectory:
    """Write ``files`` and their signed manifest as ``dest/name`` (a new directory), verify it, and move it
    into place; on any failure nothing is left behind. Invalid when the destination is refused."""
    target = check_destination(dest, data_dir)
    for file_name in files:
        if not safe_name(file_name) or file_name in SIGNED_NAMES:
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
            listed[file_name] = {"sha256": write_file(partial / file_name, data), "bytes": len(data)}
        pem = signer.public_pem.encode("ascii")
        listed[PUBLIC_KEY_NAME] = {"sha256": write_file(partial / PUBLIC_KEY_NAME, pem), "bytes": len(pem)}
        body = {**manifest, "format": fmt, "public_key_id": signer.key_id, "files": listed}
        encoded = (json.dumps(body, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")
        write_file(partial / MANIFEST_NAME, encoded)
        write_file(partial / SIGNATURE_NAME, signer.sign(encoded))
        fsync_dir(partial)
        verify_signed_directory(partial, fmt, public_key_pem=signer.public_pem)
        os.rename(partial, final)
        fsync_dir(target)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, OSError):
            raise ExportFailed(f"writing to {target} failed: {exc.strerror or exc}; nothing was left behind") from None
        raise
    return verify_signed_directory(final, fmt, public_key_pem=signer.public_pem)


def verify_signed_directory(path: Path | str, fmt: str, *, public_key_pem: str | None = None) -> SignedDirectory:
    """Verify a signed directory offline; raise VerifyFailed naming the first file that does not verify."""
    folder = Path(path)
    if not folder.is_dir():
        raise MediaFailed(folder, "is not a directory")
    signed = read_signed_manifest(folder, fmt, public_key_pem)
    check_listed_files(folder, signed.manifest, (PUBLIC_KEY_NAME,), exact=True)
    return SignedDirectory(folder, signed.manifest, signed.manifest_sha256, signed.key_id)
