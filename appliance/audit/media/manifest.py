"""The removable-media format shared by the audit export and the examination pack: its names, how a file is
written onto the medium (owner-only, fsynced, never over an existing file or a symlink), and the offline checks
of a signed directory (the manifest's Ed25519 signature under the included key, and every listed file's SHA-256
and size). The audit export (writer.py, verifier.py) and the pack (signed.py) both use these functions: one
signing and one verification code path."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from appliance.audit.verify import VerifyFailed
from appliance.crypto import load_public_key, public_key_id, verify

FORMAT = "vigatra-audit-export"
FORMAT_VERSION = 1
CSV_NAME = "audit.csv"
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
PUBLIC_KEY_NAME = "public_key.pem"
SIGNED_NAMES = (MANIFEST_NAME, SIGNATURE_NAME, PUBLIC_KEY_NAME)

# Where an export is written before it is recorded: ``.<final name>.partial-<8 hex>`` (hidden).
PARTIAL_MARK = ".partial-"
PARTIAL_NAME = re.compile(r"\.(?P<name>.+)\.partial-[0-9a-f]{8}")
# A complete export the appliance never recorded, set aside by the next export run: not in the series.
UNRECORDED_SUFFIX = ".unrecorded"


# -- writing ----------------------------------------------------------------------------------------------

def fsync_dir(path: Path) -> None:
    """Make a directory's entries durable (a no-op where the filesystem cannot fsync a directory)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems cannot fsync a directory; the files themselves were synced
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def create_file(path: Path) -> BinaryIO:
    """A new file only its owner can read (the trail and the reports name people, addresses and what they
    looked at; removable media are often mounted for everyone). Refuses an existing file or a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.fdopen(os.open(path, flags, 0o600), "wb")


def write_file(path: Path, data: bytes) -> str:
    """Write ``data`` as a new owner-only file, fsynced; its SHA-256 (hex)."""
    with create_file(path) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return hashlib.sha256(data).hexdigest()


# -- verifying --------------------------------------------------------------------------------------------

class MediaFailed(VerifyFailed):
    """A signed directory that does not verify; the message starts with its path."""

    def __init__(self, path: Path, message: str, *, event_id: int | None = None) -> None:
        super().__init__(f"{path}: {message}", event_id=event_id)


def sha256_file(path: Path) -> tuple[str, int]:
    """A file's SHA-256 (hex) and size, read in blocks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


@dataclass(frozen=True)
class SignedManifest:
    manifest: dict[str, Any]
    manifest_sha256: str
    key_id: str


def read_signed_manifest(folder: Path, fmt: str, public_key_pem: str | None = None, *,
                         versions: dict[str, Any] | None = None) -> SignedManifest:
    """The manifest of a signed directory, once its signature verifies under the included key (pinned with
    ``public_key_pem``), it is JSON of format ``fmt`` (and the ``versions`` given), and it names that key."""
    for name in SIGNED_NAMES:
        if not (folder / name).is_file():
            raise MediaFailed(folder, f"{name} is missing")
    manifest_bytes = (folder / MANIFEST_NAME).read_bytes()
    included = (folder / PUBLIC_KEY_NAME).read_bytes()
    try:
        key_id = public_key_id(included)
    except ValueError as exc:
        raise MediaFailed(folder, f"{PUBLIC_KEY_NAME}: {exc}") from None
    if public_key_pem is not None:
        expected = public_key_id(load_public_key(public_key_pem))
        if expected != key_id:
            raise MediaFailed(folder, f"signed with key {key_id}, not with the expected key {expected}")
    if not verify(included, manifest_bytes, (folder / SIGNATURE_NAME).read_bytes()):
        raise MediaFailed(folder, f"{SIGNATURE_NAME} does not verify: {MANIFEST_NAME} was altered or swapped")
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        raise MediaFailed(folder, f"{MANIFEST_NAME} is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        raise MediaFailed(folder, f"{MANIFEST_NAME} is not a {fmt} manifest")
    wanted = versions or {}
    if any(manifest.get(k) != v for k, v in wanted.items()):
        found = "/".join(str(manifest.get(k)) for k in wanted)
        raise MediaFailed(folder, f"unsupported {' and '.join(wanted)} {found} (this verifier reads "
                                  f"{'/'.join(str(v) for v in wanted.values())})")
    if manifest.get("public_key_id") != key_id:
        raise MediaFailed(folder, f"the manifest names key {manifest.get('public_key_id')} but {PUBLIC_KEY_NAME} "
                                  f"is {key_id}")
    return SignedManifest(manifest, hashlib.sha256(manifest_bytes).hexdigest(), key_id)


def safe_name(name: object) -> bool:
    """A plain file name inside the directory (no path, no parent, not hidden)."""
    return (isinstance(name, str) and bool(name) and "/" not in name and "\\" not in name
            and name not in (".", "..") and not name.startswith(".") and "\x00" not in name)


def check_listed_files(folder: Path, manifest: dict[str, Any], required: tuple[str, ...], *,
                       exact: bool = False) -> None:
    """Every file the manifest lists (``required`` among them) is present with its SHA-256 and size; with
    ``exact``, the directory holds nothing else (a file added fails, naming it)."""
    files = manifest.get("files")
    if not isinstance(files, dict) or any(name not in files for name in required):
        raise MediaFailed(folder, f"the manifest does not list {' and '.join(required)}")
    for name, info in sorted(files.items()):
        if not safe_name(name):
            raise MediaFailed(folder, f"the manifest lists a file outside the directory: {name!r}")
        if not (folder / name).is_file() or (folder / name).is_symlink():
            raise MediaFailed(folder, f"{name} is missing")
        digest, size = sha256_file(folder / name)
        if not isinstance(info, dict) or digest != info.get("sha256") or size != info.get("bytes"):
            raise MediaFailed(folder, f"{name}: SHA-256 or size does not match the manifest (the file was altered)")
    if exact:
        extra = sorted({entry.name for entry in folder.iterdir()} - set(files) - {MANIFEST_NAME, SIGNATURE_NAME})
        if extra:
            raise MediaFailed(folder, f"{extra[0]} is not listed in the manifest (a file was added)")
