"""Ed25519 helpers: deterministic keys from a derived seed, offline verification from the PEM alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from appliance.crypto import public_key_id, public_key_pem, sign, signing_key_from_seed, verify
from appliance.crypto.providers import FileKeyProvider
from tests.crypto.conftest import make_settings, write_key_file

MESSAGE = b"checkpoint seq=1042 head=ab12"


def test_seed_from_the_provider_gives_a_stable_key(data_dir: Path, etc_dir: Path) -> None:
    path = etc_dir / "kek.key"
    write_key_file(path)
    settings = make_settings(data_dir, file_path=path)
    first = signing_key_from_seed(FileKeyProvider(settings).derive("audit-signing"))
    second = signing_key_from_seed(FileKeyProvider(settings).derive("audit-signing"))
    assert public_key_pem(first) == public_key_pem(second)
    assert public_key_pem(first).startswith("-----BEGIN PUBLIC KEY-----")
    assert public_key_id(first) == public_key_id(public_key_pem(first)) == public_key_id(second.public_key())
    assert len(public_key_id(first)) == 16


def test_sign_and_verify_offline() -> None:
    key = signing_key_from_seed(bytes(range(32)))
    pem = public_key_pem(key)
    signature = sign(key, MESSAGE)
    assert len(signature) == 64
    assert verify(pem, MESSAGE, signature)
    assert verify(pem.encode(), MESSAGE, signature)
    assert not verify(pem, MESSAGE + b"!", signature)
    flipped = bytearray(signature)
    flipped[10] ^= 1
    assert not verify(pem, MESSAGE, bytes(flipped))
    assert not verify(pem, MESSAGE, signature[:-1])
    other = public_key_pem(signing_key_from_seed(bytes(32)))
    assert not verify(other, MESSAGE, signature)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        signing_key_from_seed(b"short")
    with pytest.raises(ValueError, match="not a PEM public key"):
        verify("garbage", MESSAGE, bytes(64))
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError, match="not an Ed25519 key"):
        verify(rsa_pem, MESSAGE, bytes(64))
