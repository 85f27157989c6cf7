"""Sealing of secret columns: AES-256-GCM under data keys (DEKs) held in memory.

The store keeps only the blob; the DEKs come unwrapped from the key provider at start-up, so a
copy of the database yields ciphertext only (SECURITY.md "Secrets at rest"). Blob layout::

    magic b"VGS" | format 0x01 | key version (4 bytes, big-endian) | nonce (12 bytes) | ciphertext + tag (16 bytes)

Associated data is ``magic | format | key version`` followed by the length-prefixed UTF-8 of the
table, the column and the row id (as text, so ``42`` and ``"42"`` are the same row). A blob copied
into another row or column, or whose key-version header is edited, fails authentication.

Every failure is one :class:`IntegrityFailure` line naming table, column and row, never the
plaintext or a key. A failing blob is never retried with another key and never read as empty:
the caller turns the connection red, alerts and audits (the lead's layer does that).

Nonces are 96 random bits per seal. SECURITY.md asks to rotate long before 2**32 seals under one
key (the NIST SP 800-38D limit for random 96-bit nonces); the sealer counts seals per key version
and refuses to seal under a key that already has 2**32 - 1. The count lives in memory: callers
that persist it pass it back in ``seal_counts``.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import IntegrityFailure, Unavailable

MAGIC = b"VGS"
FORMAT_VERSION = 1
NONCE_LEN = 12
TAG_LEN = 16
KEY_LEN = 32
MAX_KEY_VERSION = 2**32 - 1
SEAL_LIMIT = 2**32 - 1

_PREFIX = struct.Struct(">3sBI")  # magic, format version, key version
HEADER_LEN = _PREFIX.size + NONCE_LEN
MIN_BLOB_LEN = HEADER_LEN + TAG_LEN


class SealLimitReached(Unavailable):
    """The active data key has sealed as many values as it safely may; rotate it."""

    code = "seal_limit_reached"


def generate_dek() -> bytes:
    """A new 256-bit data key from the OS CSPRNG."""
    key = os.urandom(KEY_LEN)
    if len(key) != KEY_LEN:
        raise RuntimeError("the OS returned a short key")
    return key


def _where(table: str, column: str, row_id: int | str) -> str:
    return f"{table}.{column} row {row_id}"


def _row_text(row_id: int | str) -> str:
    if isinstance(row_id, bool) or not isinstance(row_id, int | str):
        raise TypeError("row_id must be an int or a str")
    return str(row_id)


def _aad(prefix: bytes, table: str, column: str, row_id: int | str) -> bytes:
    if not table or not column:
        raise ValueError("table and column must be non-empty")
    parts = [prefix]
    for text in (table, column, _row_text(row_id)):
        data = text.encode("utf-8")
        parts.append(struct.pack(">I", len(data)))
        parts.append(data)
    return b"".join(parts)


class Sealer:
    """Seals and opens column values with the unwrapped DEKs of every live key version.

    Thread-safe: AESGCM objects are stateless per call; the seal counters take a lock.
    """

    def __init__(self, keys: Mapping[int, bytes], active_version: int, *,
                 seal_counts: Mapping[int, int] | None = None) -> None:
        ciphers: dict[int, AESGCM] = {}
        for version, key in keys.items():
            if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= MAX_KEY_VERSION:
                raise ValueError(f"key version {version!r} is not a 32-bit unsigned integer")
            if not isinstance(key, bytes) or len(key) != KEY_LEN:
                raise ValueError(f"data key version {version} is not {KEY_LEN} bytes")
            ciphers[version] = AESGCM(key)
        if active_version not in ciphers:
            raise ValueError(f"active key version {active_version} is not among the loaded keys")
        self._ciphers = ciphers
        self._active = active_version
        self._counts: dict[int, int] = {v: 0 for v in ciphers}
        for version, count in (seal_counts or {}).items():
            if version in self._counts:
                self._counts[version] = int(count)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Sealer active={self._active} versions={sorted(self._ciphers)}>"

    @property
    def active_version(self) -> int:
        return self._active

    @property
    def versions(self) -> tuple[int, ...]:
        return tuple(sorted(self._ciphers))

    def has_version(self, version: int) -> bool:
        """Whether this sealer holds the DEK of ``version`` (a newer one may exist in the store)."""
        return version in self._ciphers

    def seal_count(self, version: int) -> int:
        """Seals made under ``version`` by this sealer (plus any ``seal_counts`` it was given)."""
        with self._lock:
            return self._counts.get(version, 0)

    def _reserve_seal(self, version: int) -> None:
        with self._lock:
            if self._counts[version] >= SEAL_LIMIT:
                raise SealLimitReached(f"data key version {version} has sealed {SEAL_LIMIT} values, the safe limit "
                                       "for random nonces; run `vigatra keys rotate`")
            self._counts[version] += 1

    def seal(self, plaintext: str | bytes, *, table: str, column: str, row_id: int | str) -> bytes:
        data = plaintext.encode("utf-8") if isinstance(plaintext, str) else plaintext
        if not isinstance(data, bytes):
            raise TypeError("plaintext must be str or bytes")
        version = self._active
        prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, version)
        aad = _aad(prefix, table, column, row_id)
        nonce = os.urandom(NONCE_LEN)
        if len(nonce) != NONCE_LEN:  # SECURITY.md: the sealer rejects any other length (not an assert: -O)
            raise RuntimeError("the OS returned a short nonce")
        self._reserve_seal(version)
        return prefix + nonce + self._ciphers[version].encrypt(nonce, data, aad)

    def open(self, blob: bytes, *, table: str, column: str, row_id: int | str) -> bytes:
        where = _where(table, column, row_id)
        if not isinstance(blob, bytes | bytearray | memoryview):
            raise IntegrityFailure(f"sealed value {where} is not a byte string")
        blob = bytes(blob)
        if len(blob) < MIN_BLOB_LEN:
            raise IntegrityFailure(f"sealed value {where} is truncated ({len(blob)} bytes)")
        magic, fmt, version = _PREFIX.unpack_from(blob)
        if magic != MAGIC:
            raise IntegrityFailure(f"sealed value {where} is not a sealed blob (bad magic)")
        if fmt != FORMAT_VERSION:
            raise IntegrityFailure(f"sealed value {where} has unknown format version {fmt}")
        cipher = self._ciphers.get(version)
        if cipher is None:
            raise IntegrityFailure(f"sealed value {where} names unknown key version {version}")
        nonce = blob[_PREFIX.size:HEADER_LEN]
        aad = _aad(blob[:_PREFIX.size], table, column, row_id)
        try:
            return cipher.decrypt(nonce, blob[HEADER_LEN:], aad)
        except InvalidTag:
            raise IntegrityFailure(f"sealed value {where} failed authentication (tampered, or copied from "
                                   "another row, column or key version)") from None

    def open_text(self, blob: bytes, *, table: str, column: str, row_id: int | str) -> str:
        data = self.open(blob, table=table, column=column, row_id=row_id)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            # The decode error's text would quote plaintext bytes; say only where.
            raise IntegrityFailure(f"sealed value {_where(table, column, row_id)} is not UTF-8 text") from None

    @staticmethod
    def key_version_of(blob: bytes) -> int:
        """The key version in a blob's header (for rotation batches), without opening it."""
        if not isinstance(blob, bytes | bytearray | memoryview) or len(blob) < MIN_BLOB_LEN:
            raise IntegrityFailure("sealed value is truncated")
        magic, fmt, version = _PREFIX.unpack_from(bytes(blob))
        if magic != MAGIC:
            raise IntegrityFailure("sealed value is not a sealed blob (bad magic)")
        if fmt != FORMAT_VERSION:
            raise IntegrityFailure(f"sealed value has unknown format version {fmt}")
        return int(version)
