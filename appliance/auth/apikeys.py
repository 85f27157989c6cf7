"""API key format: ``vgk_<prefix>_<secret>``.

The prefix (10 base32 characters) is the key's public handle and stays the same across rotations;
the secret (256 random bits) is shown once and stored only as its SHA-256 (a fast hash is right
here: the secret is random, not a human password).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

PREFIX = "vgk_"
_FORMAT = re.compile(r"^vgk_([a-z2-7]{10})_([A-Za-z0-9_-]{43})$")


def new_prefix() -> str:
    return base64.b32encode(secrets.token_bytes(10)).decode().lower()[:10]


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def compose(prefix: str, secret: str) -> str:
    return f"{PREFIX}{prefix}_{secret}"


def split(key: str) -> tuple[str, str] | None:
    match = _FORMAT.match(key)
    return (match.group(1), match.group(2)) if match else None


def looks_like_key(value: str) -> bool:
    return value.startswith(PREFIX)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, stored_hash: str | None) -> bool:
    return stored_hash is not None and hmac.compare_digest(hash_secret(secret), stored_hash)


def fingerprint(key: str) -> str:
    """Names a presented key in logs and audit without revealing it."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]
