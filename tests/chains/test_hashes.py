"""Keccak-256 (Ethereum), RIPEMD-160 and BIP-32 public derivation on secp256k1, against published
vectors and an independent implementation (``cryptography`` derives the public keys of BIP-32's private
derivation); a missing library stops start-up with one clear line."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance.venues.chains import primitives
from appliance.venues.chains.primitives import (
    HARDENED,
    DerivationError,
    N,
    derive_public_child,
    hash160,
    keccak256,
    parse_public_key,
    ripemd160,
)


def _compressed(scalar: int) -> bytes:
    """The compressed public key of a private scalar, computed by ``cryptography`` (not coincurve)."""
    return ec.derive_private_key(scalar, ec.SECP256K1()).public_key().public_bytes(
        Encoding.X962, PublicFormat.CompressedPoint)


@pytest.mark.parametrize(("data", "digest"), [
    (b"", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"),
    (b"abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"),
    # The ERC-20/721 Transfer event topic and the ERC-20 selectors (VENUES.md §14).
    (b"Transfer(address,address,uint256)", "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"),
])
def test_keccak256_vectors(data: bytes, digest: str) -> None:
    assert keccak256(data).hex() == digest


@pytest.mark.parametrize(("signature", "selector"), [
    ("balanceOf(address)", "70a08231"), ("decimals()", "313ce567"), ("symbol()", "95d89b41"),
    ("transfer(address,uint256)", "a9059cbb"),
])
def test_keccak_function_selectors(signature: str, selector: str) -> None:
    assert keccak256(signature.encode()).hex()[:8] == selector


@pytest.mark.parametrize("length", [0, 1, 55, 135, 136, 137, 271, 272, 1000])
def test_keccak256_is_not_sha3_256(length: int) -> None:
    data = bytes(range(256)) * 4
    assert keccak256(data[:length]) != hashlib.sha3_256(data[:length]).digest()  # different padding


@pytest.mark.parametrize(("data", "digest"), [
    (b"", "9c1185a5c5e9fc54612808977ee8f548b2258d31"),
    (b"abc", "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc"),
    (b"message digest", "5d0689ef49d2fae572b881b123a85ffa21595f36"),
    (b"abcdefghijklmnopqrstuvwxyz", "f71c27109c692c1b56bbdceb5b9d2865b3708dbc"),
    (b"1234567890" * 8, "9b752e45573d4b39f4dbd3323cab82bf63326bfb"),
])
def test_ripemd160_vectors(data: bytes, digest: str) -> None:
    assert ripemd160(data).hex() == digest


def test_hash160_of_the_generator_point() -> None:
    # HASH160 of the compressed generator (private key 1): the payload of 1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMH.
    assert hash160(_compressed(1)).hex() == "751e76e8199196d454941c45d1b3a323f1433bd6"


@pytest.mark.parametrize("scalar", [1, 2, 3, 0xDEADBEEF, 2**128 + 12345, N - 1])
@pytest.mark.parametrize("index", [0, 1, 7, HARDENED - 1])
def test_public_derivation_matches_private_derivation(scalar: int, index: int) -> None:
    """CKDpub(K, c, i) is the public key of CKDpriv(k, c, i) = (I_L + k) mod n (BIP-32), the latter
    computed with ``cryptography``."""
    chain_code = hashlib.sha256(scalar.to_bytes(32, "big")).digest()
    parent = _compressed(scalar)
    digest = hmac.new(chain_code, parent + index.to_bytes(4, "big"), hashlib.sha512).digest()
    child_scalar = (int.from_bytes(digest[:32], "big") + scalar) % N
    assert derive_public_child(parent, chain_code, index) == (_compressed(child_scalar), digest[32:])


def test_public_derivation_refuses_hardened_indexes_and_bad_keys() -> None:
    key = _compressed(7)
    with pytest.raises(DerivationError, match="hardened"):
        derive_public_child(key, bytes(32), HARDENED)
    with pytest.raises(DerivationError, match="not on secp256k1"):
        parse_public_key(b"\x02" + (5).to_bytes(32, "big"))  # x = 5 is not on secp256k1
    with pytest.raises(DerivationError, match="not a compressed public key"):
        parse_public_key(b"\x04" + bytes(32))
    with pytest.raises(DerivationError, match="out of range"):
        parse_public_key(b"\x02" + (2**256 - 1).to_bytes(32, "big"))


def test_the_known_answers_hold() -> None:
    primitives.check()


def test_a_missing_library_stops_serve_with_one_line(tmp_path: Path) -> None:
    blocked = "import sys; sys.modules['Crypto'] = None; sys.modules['Crypto.Hash'] = None\n"
    script = blocked + "from appliance.cli.main import main\nmain(['--config', sys.argv[1], 'serve', '--port', '0'])\n"
    config = tmp_path / "vigatra.yaml"
    config.write_text(f"data_dir: {tmp_path}\n")
    result = subprocess.run([sys.executable, "-c", script, str(config)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 1, result.stderr
    assert "cannot load Crypto" in result.stderr and "pycryptodome" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
