"""API key format: ``vgk_<prefix>_<secret>``.

The prefix (10 base32 characters) is the key's public handle and stays the same across rotations;
the secret (256 random bits) is shown once and stored only as its SHA-256 (a fast hash is right
here: the secret is random, not a human password).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "vgk_"
PREFIX_LENGTH = 10
SECRET_LENGTH = 43  # token_urlsafe(32)
_SECRET_AT = len(PREFIX) + PREFIX_LENGTH + 1
KEY_LENGTH = _SECRET_AT + SECRET_LENGTH


def new_prefix() -> str:
    return base64.b32encode(secrets.token_bytes(10)).decode().lower()[:10]


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def compose(prefix: str, secret: str) -> str:
    return f"{PREFIX}{prefix}_{secret}"


def split(key: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a string shaped like a key (length and separators), else None.

    The characters need no check of their own: a prefix is only ever looked up among the known keys
    and a secret only ever hashed and compared, and neither matches unless the key is genuine. (This
    runs on every API-key request: slicing, not a regular expression.)
    """
    if len(key) != KEY_LENGTH or not key.startswith(PREFIX) or key[_SECRET_AT - 1] != "_":
        return None
    return key[len(PREFIX):_SECRET_AT - 1], key[_SECRET_AT:]


def looks_like_key(value: str) -> bool:
    return value.startswith(PREFIX)


def hash_secret(secret: str) -> str:
    """What the database stores: the secret's SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def digest(secret: str) -> bytes:
    """The secret's SHA-256 as bytes: what a presented secret is compared in (no hex encoding per request)."""
    return hashlib.sha256(secret.encode()).digest()


def stored_digest(stored_hash: str | None) -> bytes | None:
    """The bytes of a stored hex hash; None when there is none, or when it is not a SHA-256 in hex (so it
    can never match)."""
    if stored_hash is None or len(stored_hash) != 64:
        return None
    try:
        return bytes.fromhex(stored_hash)
    except ValueError:
        return None


def matches(presented: bytes, stored: bytes | None) -> bool:
    """Whether a presented secret's :func:`digest` is ``stored`` (in constant time)."""
    return stored is not None and hmac.compare_digest(presented, stored)


def fingerprint(key: str) -> str:
    """Names a presented key in logs and audit without revealing it."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]
