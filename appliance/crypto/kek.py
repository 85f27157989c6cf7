"""The key-encryption key (KEK) interface, and the wrapped data-key format all providers share.

Why this module exists on its own: the software providers (providers.py) and the HSM provider
(hsm.py) both implement :class:`KeyProvider` and write the same self-describing wrapped blob, while
``python-pkcs11`` must only be imported when the HSM provider is configured. Keeping the contract
here lets both import it without importing each other.

Wrapped data key (what the store keeps next to each DEK version)::

    format (1 byte) | KEK fingerprint (8 bytes) | nonce (12 bytes) | AES-256-GCM(dek) + tag (16 bytes)

``format`` says who can open it (0x01: the software providers, which all derive the same wrapping
key from the same KEK bytes, so a KEK moved from a file to a systemd credential still opens it;
0x02: a PKCS#11 token). The fingerprint is the 8 bytes behind :meth:`KeyProvider.kek_id`, so a
database copied next to a different KEK fails with "KEK unavailable" instead of a misleading
integrity error. The associated data is ``format | fingerprint | context``: the caller's context
(e.g. ``b"vigatra-dek:3"``) binds the wrapped key to its version, and a header edit fails the tag.
"""

from __future__ import annotations

import errno
import os
import stat
from abc import ABC, abstractmethod
from pathlib import Path
from typing import NamedTuple

from appliance.errors import IntegrityFailure, KeyProviderError
from appliance.settings import Settings

WRAP_FORMAT_SOFTWARE = 0x01
WRAP_FORMAT_PKCS11 = 0x02
WRAP_FORMAT_NAMES = {WRAP_FORMAT_SOFTWARE: "a software provider (file, env, systemd, keyring)",
                     WRAP_FORMAT_PKCS11: "the pkcs11 provider (HSM)"}
KEK_FINGERPRINT_LEN = 8
NONCE_LEN = 12
TAG_LEN = 16
DEK_LEN = 32
DERIVED_LEN = 32
_WRAP_HEADER_LEN = 1 + KEK_FINGERPRINT_LEN + NONCE_LEN

# Domain-separation strings. Every value taken from one KEK starts with a different prefix, so a
# derive() label can never reproduce the wrapping key or the fingerprint input.
INFO_WRAP = b"vigatra/v1/wrap"
INFO_KEK_ID = b"vigatra/v1/kek-id"
INFO_DERIVE_PREFIX = b"vigatra/v1/derive/"

# Who depends on the wording: `keys status`, `doctor` and reviewer test 4 ("KEK unavailable").
KEK_UNAVAILABLE = "KEK unavailable"


class KeyProvider(ABC):
    """Where the KEK lives and the only code that ever touches it.

    Constructing a provider touches nothing; :meth:`check` loads and validates the key and raises
    one :class:`KeyProviderError` line naming the provider. Every other method calls ``check()``
    itself on first use. Implementations are thread-safe (waitress serves from several threads).
    """

    name: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def describe(self) -> str:
        """Human text for `keys status` / `doctor`: where the key is expected. Never key bytes."""

    @abstractmethod
    def check(self) -> None:
        """Load and validate the KEK now; raise KeyProviderError (one line) if it is unusable."""

    @abstractmethod
    def kek_id(self) -> str:
        """Stable, non-secret identifier of the current KEK, e.g. ``file:3f2a...`` (16 hex digits)."""

    @abstractmethod
    def wrap(self, dek: bytes, *, context: bytes) -> bytes:
        """Encrypt a 32-byte data key under the KEK, bound to ``context``."""

    @abstractmethod
    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        """Open a blob made by :meth:`wrap` with the same ``context``.

        Raises KeyProviderError ("KEK unavailable") if it was wrapped under another KEK or by another
        kind of provider, IntegrityFailure if it is malformed or fails authentication.
        """

    @abstractmethod
    def derive(self, label: str) -> bytes:
        """32 bytes, deterministic per KEK and label (audit signing seed, JWT key, fingerprint key)."""

    @abstractmethod
    def create(self) -> str:
        """Create the KEK where the provider can (`vigatra keys init`); return one line saying what was done."""

    def close(self) -> None:  # noqa: B027 - optional hook; only providers holding a session override it
        """Release sessions and forget cached key material (the HSM provider logs out)."""

    def secret(self, name: str) -> str:
        """A secret the provider holds beside the KEK for another system (the SMTP relay's password),
        stripped of surrounding whitespace. Where it is looked for follows the provider: a systemd
        credential ``name`` when running under systemd with one, else a file ``name`` beside
        ``keys.file_path`` (mode 0400, owned by the service user). The env and keyring providers look
        in their own stores. Raises KeyProviderError naming where it looked, never the value."""
        check_secret_name(name)
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if directory and (Path(directory) / name).is_file():
            path = Path(directory) / name
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise KeyProviderError(f"{self.name} provider: cannot read credential {path}: {exc.strerror}") from None
            return secret_text(raw, f"{self.name} provider: credential {path}")
        path = self.settings.keys.file_path.parent / name
        raw = read_protected_file(path, provider=self.name, what="secret file", max_bytes=4096)
        return secret_text(raw, f"{self.name} provider: secret file {path}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


# ---------------------------------------------------------------------------------------------
# Wrapped blob helpers shared by the providers.


class WrappedParts(NamedTuple):
    fingerprint: bytes
    nonce: bytes
    ciphertext: bytes


def check_dek(dek: bytes) -> None:
    if not isinstance(dek, bytes) or len(dek) != DEK_LEN:
        raise ValueError(f"a data key is exactly {DEK_LEN} bytes")


def check_context(context: bytes) -> None:
    if not isinstance(context, bytes) or not context:
        raise ValueError("wrap/unwrap need a non-empty bytes context (e.g. b'vigatra-dek:3')")


def check_label(label: str) -> bytes:
    if not isinstance(label, str) or not label:
        raise ValueError("derive() needs a non-empty label")
    return INFO_DERIVE_PREFIX + label.encode("utf-8")


def wrap_aad(fmt: int, fingerprint: bytes, context: bytes) -> bytes:
    return bytes([fmt]) + fingerprint + context


def new_nonce() -> bytes:
    nonce = os.urandom(NONCE_LEN)
    if len(nonce) != NONCE_LEN:  # not an assert: it must survive python -O
        raise RuntimeError("the OS returned a short nonce")
    return nonce


def pack_wrapped(fmt: int, fingerprint: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    return bytes([fmt]) + fingerprint + nonce + ciphertext


def unpack_wrapped(wrapped: bytes, *, fmt: int, provider: str, kek_id: str, context: bytes) -> WrappedParts:
    """Split a wrapped blob, refusing blobs this provider cannot open (see the module docstring)."""
    what = f"wrapped data key {context.decode('ascii', 'replace')!r}"
    if not isinstance(wrapped, bytes) or len(wrapped) < _WRAP_HEADER_LEN + DEK_LEN + TAG_LEN:
        size = len(wrapped) if isinstance(wrapped, bytes) else 0
        raise IntegrityFailure(f"{what} is truncated ({size} bytes)")
    found = wrapped[0]
    if found not in WRAP_FORMAT_NAMES:
        raise IntegrityFailure(f"{what} has unknown format {found:#04x}")
    if found != fmt:
        raise KeyProviderError(f"{KEK_UNAVAILABLE}: {what} was wrapped by {WRAP_FORMAT_NAMES[found]}, "
                               f"but the configured provider is {provider} (rewrap it with the old provider)")
    fingerprint = wrapped[1:1 + KEK_FINGERPRINT_LEN]
    current = kek_id.split(":", 1)[1]
    if fingerprint.hex() != current:
        raise KeyProviderError(f"{KEK_UNAVAILABLE}: {what} was wrapped under KEK {fingerprint.hex()}, "
                               f"the {provider} provider holds {kek_id}")
    return WrappedParts(fingerprint, wrapped[1 + KEK_FINGERPRINT_LEN:_WRAP_HEADER_LEN],
                        wrapped[_WRAP_HEADER_LEN:])


def check_secret_name(name: str) -> None:
    if not isinstance(name, str) or not name or "/" in name or name in (".", "..") or len(name) > 64:
        raise KeyProviderError(f"{name!r} is not a valid secret name")


def secret_text(raw: bytes, where: str) -> str:
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise KeyProviderError(f"{where} is not UTF-8 text") from None
    if not text:
        raise KeyProviderError(f"{where} is empty")
    return text


def tag_failure(context: bytes) -> IntegrityFailure:
    return IntegrityFailure(f"wrapped data key {context.decode('ascii', 'replace')!r} failed authentication "
                            "(tampered, or wrapped for another version)")


# ---------------------------------------------------------------------------------------------
# Files that hold key material or a PIN.


def read_protected_file(path: Path, *, provider: str, what: str, max_bytes: int = 4096) -> bytes:
    """Read a small secret file, refusing anything another user could read, write or swap.

    Opened with O_NOFOLLOW and checked with fstat on the open descriptor, so the checks and the
    read concern the same file (no window to swap it for a symlink in between).
    """
    label = f"{provider} provider: {what} {path}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise KeyProviderError(f"{label} does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise KeyProviderError(f"{label} is a symbolic link; point the setting at the file itself") from None
        if exc.errno == errno.EACCES:
            raise KeyProviderError(f"{label} cannot be read by uid {os.geteuid()} (permission denied); "
                                   "it must be owned by the service user") from None
        raise KeyProviderError(f"{label} cannot be opened: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyProviderError(f"{label} is not a regular file")
        if st.st_uid != os.geteuid():
            raise KeyProviderError(f"{label} is owned by uid {st.st_uid}, not by the service user "
                                   f"(uid {os.geteuid()}); chown it to the service user")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyProviderError(f"{label} has mode {mode:04o}: group or others can access it "
                                   f"(run `chmod 0400 {path}`)")
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise KeyProviderError(f"{label} is larger than {max_bytes} bytes; it is not a key file")
        return b"".join(chunks)
    finally:
        os.close(fd)
