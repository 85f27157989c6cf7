"""Keccak-256 (Ethereum), RIPEMD-160 and the secp256k1 arithmetic, against published vectors and
independent implementations (hashlib's SHA3-256 shares Keccak's permutation; ``cryptography`` derives
public keys from private scalars)."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.venues.chains.keccak import keccak256, sha3_256
from appliance.venues.chains.ripemd160 import hash160, ripemd160, ripemd160_pure
from appliance.venues.chains.secp256k1 import (
    DerivationError,
    N,
    add_points,
    compress,
    decompress,
    derive_public_child,
    is_on_curve,
    scalar_base_multiply,
)


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
def test_sponge_matches_hashlib_sha3_across_block_boundaries(length: int) -> None:
    data = bytes(range(256)) * 4
    assert sha3_256(data[:length]) == hashlib.sha3_256(data[:length]).digest()
    assert keccak256(data[:length]) != hashlib.sha3_256(data[:length]).digest()  # different padding


@pytest.mark.parametrize(("data", "digest"), [
    (b"", "9c1185a5c5e9fc54612808977ee8f548b2258d31"),
    (b"abc", "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc"),
    (b"message digest", "5d0689ef49d2fae572b881b123a85ffa21595f36"),
    (b"abcdefghijklmnopqrstuvwxyz", "f71c27109c692c1b56bbdceb5b9d2865b3708dbc"),
    (b"1234567890" * 8, "9b752e45573d4b39f4dbd3323cab82bf63326bfb"),
])
def test_ripemd160_vectors(data: bytes, digest: str) -> None:
    assert ripemd160_pure(data).hex() == digest
    assert ripemd160(data).hex() == digest


def test_ripemd160_pure_matches_openssl_when_available() -> None:
    try:
        hashlib.new("ripemd160")
    except ValueError:
        pytest.skip("this OpenSSL has no RIPEMD-160: the pure implementation is the one in use")
    for length in (0, 55, 56, 63, 64, 65, 119, 120, 200):
        data = bytes(range(length % 256)) * (1 + length // 256)
        assert ripemd160_pure(data) == hashlib.new("ripemd160", data).digest()


def test_hash160_of_the_generator_point() -> None:
    # HASH160 of the compressed generator (private key 1): the payload of 1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMH.
    g = compress(scalar_base_multiply(1))
    assert hash160(g).hex() == "751e76e8199196d454941c45d1b3a323f1433bd6"


@pytest.mark.parametrize("scalar", [1, 2, 3, 0xDEADBEEF, 2**128 + 12345, N - 1])
def test_scalar_multiplication_matches_cryptography(scalar: int) -> None:
    theirs = ec.derive_private_key(scalar, ec.SECP256K1()).public_key().public_numbers()
    ours = scalar_base_multiply(scalar)
    assert ours == (theirs.x, theirs.y)
    assert is_on_curve(ours)
    assert decompress(compress(ours)) == ours


def test_point_addition_matches_scalar_addition() -> None:
    a, b = 0x1234567890ABCDEF, 0xFEDCBA0987654321
    assert add_points(scalar_base_multiply(a), scalar_base_multiply(b)) == scalar_base_multiply(a + b)
    assert add_points(scalar_base_multiply(a), scalar_base_multiply(N - a)) is None  # P + (-P)


def test_public_derivation_refuses_hardened_indexes_and_bad_keys() -> None:
    key = compress(scalar_base_multiply(7))
    with pytest.raises(DerivationError, match="hardened"):
        derive_public_child(key, bytes(32), 0x80000000)
    with pytest.raises(DerivationError):
        decompress(b"\x02" + (5).to_bytes(32, "big"))  # x = 5 is not on secp256k1
    with pytest.raises(DerivationError):
        decompress(b"\x04" + bytes(32))
