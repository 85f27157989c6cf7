"""Streaming authenticated encryption of large files (database backups) with AES-256-GCM.

Why hand-written: ``cryptography`` offers AES-GCM for one message held in memory, and a database
backup may be larger than the memory we want to spend; no well-kept library in our dependency set
offers a streaming AEAD (Tink's would bring a protobuf stack for one function). The construction is
the STREAM scheme of Hoang, Reyhanitabar, Rogaway and Vizár ("Online Authenticated-Encryption and
its Nonce-Reuse Misuse-Resistance", CRYPTO 2015), the one Tink and age use:

    header = MAGIC | chunk size (4 bytes, big-endian) | nonce prefix (7 random bytes)
    chunk i = AES-256-GCM(key, nonce = prefix | i (4 bytes, big-endian) | last (1 byte),
                          plaintext chunk i, associated data = header | caller's context)

Every chunk but the last holds exactly ``chunk size`` bytes of plaintext; the last holds the rest
(possibly nothing) and has ``last`` = 1, so a truncated file, reordered or dropped chunks, a chunk
from another file (other nonce prefix) and a header edit all fail authentication. The caller's
``context`` (e.g. ``b"vigatra-backup/<id>/database"``) binds the ciphertext to its place.

One key may encrypt a few files: each gets a fresh random prefix, and 2^56 prefixes make a repeat
negligible for the handful of files in one backup.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import IntegrityFailure

MAGIC = b"VGSTREAM1\n"
PREFIX_LEN = 7
TAG_LEN = 16
KEY_LEN = 32
DEFAULT_CHUNK = 1 << 20
_HEADER = struct.Struct(f">{len(MAGIC)}sI{PREFIX_LEN}s")
_MAX_CHUNKS = 1 << 32


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= _MAX_CHUNKS:
        raise ValueError("stream too long for one key and prefix")
    return prefix + struct.pack(">IB", index, 1 if last else 0)


class StreamDigests:
    """SHA-256 and size of what passed through, plaintext and ciphertext alike (for the manifest)."""

    def __init__(self) -> None:
        self.plain = hashlib.sha256()
        self.cipher = hashlib.sha256()
        self.plain_size = 0
        self.cipher_size = 0


class EncryptingWriter:
    """A write-only file object: what is written is encrypted chunk by chunk into ``sink``.

    ``close()`` writes the last chunk (which may be empty) and must be called exactly once; the
    digests of both sides are complete after it.
    """

    def __init__(self, key: bytes, sink: BinaryIO, *, context: bytes, chunk_size: int = DEFAULT_CHUNK) -> None:
        if len(key) != KEY_LEN:
            raise ValueError(f"the stream key is exactly {KEY_LEN} bytes")
        if not 1024 <= chunk_size <= (1 << 26):
            raise ValueError("chunk size out of range")
        self._aead = AESGCM(key)
        self._sink = sink
        self._chunk_size = chunk_size
        header = _HEADER.pack(MAGIC, chunk_size, os.urandom(PREFIX_LEN))
        self._prefix = header[-PREFIX_LEN:]
        self._aad = header + context
        self._buffer = bytearray()
        self._index = 0
        self._closed = False
        self.digests = StreamDigests()
        self._emit(header)

    def _emit(self, data: bytes) -> None:
        self._sink.write(data)
        self.digests.cipher.update(data)
        self.digests.cipher_size += len(data)

    def _seal(self, data: bytes, last: bool) -> None:
        self.digests.plain.update(data)
        self.digests.plain_size += len(data)
        self._emit(self._aead.encrypt(_nonce(self._prefix, self._index, last), data, self._aad))
        self._index += 1

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a closed encrypted stream")
        self._buffer += data
        # Keep at least one byte back: the last chunk is sealed differently, and only close() knows it.
        while len(self._buffer) > self._chunk_size:
            self._seal(bytes(self._buffer[:self._chunk_size]), last=False)
            del self._buffer[:self._chunk_size]
        return len(data)

    def close(self) -> StreamDigests:
        if self._closed:
            raise ValueError("the encrypted stream is already closed")
        self._closed = True
        self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()
        return self.digests


def encrypt_stream(key: bytes, source: BinaryIO, sink: BinaryIO, *, context: bytes,
                   chunk_size: int = DEFAULT_CHUNK) -> StreamDigests:
    """Encrypt everything ``source`` yields into ``sink``; returns the digests of both sides."""
    writer = EncryptingWriter(key, sink, context=context, chunk_size=chunk_size)
    while True:
        block = source.read(chunk_size)
        if not block:
            return writer.close()
        writer.write(block)


def decrypt_stream(key: bytes, source: BinaryIO, *, context: bytes) -> Iterator[bytes]:
    """Yield the plaintext chunk by chunk, each only after its tag verified.

    Raises IntegrityFailure at the first chunk that does not authenticate, or when the stream ends
    before its last chunk. A consumer must treat what it received before an error as untrusted.
    """
    if len(key) != KEY_LEN:
        raise ValueError(f"the stream key is exactly {KEY_LEN} bytes")
    header = _read_full(source, _HEADER.size)
    if len(header) != _HEADER.size:
        raise IntegrityFailure("encrypted stream is truncated (no header)")
    magic, chunk_size, prefix = _HEADER.unpack(header)
    if magic != MAGIC:
        raise IntegrityFailure("not an encrypted Vigatra stream (bad magic)")
    if not 1024 <= chunk_size <= (1 << 26):
        raise IntegrityFailure("encrypted stream header is corrupt (chunk size)")
    aead = AESGCM(key)
    aad = header + context
    step = chunk_size + TAG_LEN
    index = 0
    pending = _read_full(source, step)
    while True:
        if len(pending) < TAG_LEN:
            raise IntegrityFailure(f"encrypted stream is truncated at chunk {index}")
        following = _read_full(source, step) if len(pending) == step else b""
        last = not following
        try:
            plain = aead.decrypt(_nonce(prefix, index, last), pending, aad)
        except InvalidTag:
            raise IntegrityFailure(f"encrypted stream failed authentication at chunk {index} (changed, truncated "
                                   "or encrypted under another key)") from None
        yield plain
        if last:
            return
        pending = following
        index += 1


def _read_full(source: BinaryIO, size: int) -> bytes:
    parts: list[bytes] = []
    remaining = size
    while remaining:
        chunk = source.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)
