"""Ed25519 helpers for signed audit checkpoints and export manifests.

The private key is never stored: its 32-byte seed comes from ``KeyProvider.derive(label)``, so it
lives with the KEK and not in the database (SECURITY.md "Audit"). Verification needs only the
public key PEM, which is what a regulator receives next to an export; ``verify`` touches no
provider and works offline.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SEED_LEN = 32
SIGNATURE_LEN = 64


def signing_key_from_seed(seed: bytes) -> Ed25519PrivateKey:
    """The Ed25519 private key for a 32-byte seed (deterministic: same seed, same key)."""
    if not isinstance(seed, bytes) or len(seed) != SEED_LEN:
        raise ValueError(f"an Ed25519 seed is exactly {SEED_LEN} bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


def _public(key: Ed25519PrivateKey | Ed25519PublicKey) -> Ed25519PublicKey:
    return key.public_key() if isinstance(key, Ed25519PrivateKey) else key


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """SubjectPublicKeyInfo PEM of the public half (safe to publish and to ship with exports)."""
    return _public(key).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def public_key_id(key: Ed25519PrivateKey | Ed25519PublicKey | str | bytes) -> str:
    """Short id of a public key (first 16 hex of SHA-256 of the raw 32 bytes), for manifests and logs."""
    public = load_public_key(key) if isinstance(key, str | bytes) else _public(key)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    """A 64-byte Ed25519 signature over ``message``."""
    return key.sign(message)


def load_public_key(public_pem: str | bytes) -> Ed25519PublicKey:
    """Parse a PEM public key; ValueError if it is not an Ed25519 public key."""
    data = public_pem.encode("ascii") if isinstance(public_pem, str) else public_pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the public key is not an Ed25519 key")
    return key


def verify(public_pem: str | bytes, message: bytes, signature: bytes) -> bool:
    """True if ``signature`` is a valid Ed25519 signature of ``message`` under ``public_pem``.

    A malformed key raises ValueError (a broken verification setup is not a bad signature); a
    wrong, truncated or altered signature returns False.
    """
    key = load_public_key(public_pem)
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_LEN:
        return False
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True
