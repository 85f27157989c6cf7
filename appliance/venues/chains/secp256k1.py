"""Just enough secp256k1 for BIP-32 *public* derivation: decompress a public key, add a tweak times
G, compress the result.

``cryptography`` can multiply G by a scalar (private key -> public key) but cannot add two points,
which CKDpub needs (child = I_L*G + K_parent). No secret ever goes through here: the scalars are
public tweaks derived from an extended *public* key, so constant-time arithmetic is not required.
"""

from __future__ import annotations

import hashlib
import hmac

P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (
    0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
    0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
)
HARDENED = 0x80000000

Point = tuple[int, int]
_Jacobian = tuple[int, int, int]  # (X, Y, Z) with x = X/Z^2, y = Y/Z^3; Z == 0 is infinity


class DerivationError(ValueError):
    """A public key or derivation step is invalid (not on the curve, hardened index, bad tweak)."""


def _double(p: _Jacobian) -> _Jacobian:
    x, y, z = p
    if z == 0 or y == 0:
        return (0, 1, 0)
    ysq = y * y % P
    s = 4 * x * ysq % P
    m = 3 * x * x % P  # a = 0 on secp256k1
    nx = (m * m - 2 * s) % P
    ny = (m * (s - nx) - 8 * ysq * ysq) % P
    nz = 2 * y * z % P
    return (nx, ny, nz)


def _add(p: _Jacobian, q: _Jacobian) -> _Jacobian:
    if p[2] == 0:
        return q
    if q[2] == 0:
        return p
    x1, y1, z1 = p
    x2, y2, z2 = q
    z1sq, z2sq = z1 * z1 % P, z2 * z2 % P
    u1, u2 = x1 * z2sq % P, x2 * z1sq % P
    s1, s2 = y1 * z2sq * z2 % P, y2 * z1sq * z1 % P
    if u1 == u2:
        return _double(p) if s1 == s2 else (0, 1, 0)
    h, r = (u2 - u1) % P, (s2 - s1) % P
    hsq = h * h % P
    hcu = hsq * h % P
    nx = (r * r - hcu - 2 * u1 * hsq) % P
    ny = (r * (u1 * hsq - nx) - s1 * hcu) % P
    nz = h * z1 * z2 % P
    return (nx, ny, nz)


def _affine(p: _Jacobian) -> Point | None:
    x, y, z = p
    if z == 0:
        return None
    zinv = pow(z, -1, P)
    zinv2 = zinv * zinv % P
    return (x * zinv2 % P, y * zinv2 * zinv % P)


def _multiply(k: int, point: Point) -> _Jacobian:
    result: _Jacobian = (0, 1, 0)
    addend: _Jacobian = (point[0], point[1], 1)
    while k:
        if k & 1:
            result = _add(result, addend)
        addend = _double(addend)
        k >>= 1
    return result


def scalar_base_multiply(k: int) -> Point:
    point = _affine(_multiply(k % N, G))
    if point is None:
        raise DerivationError("scalar is zero")
    return point


def add_points(p: Point, q: Point) -> Point | None:
    return _affine(_add((p[0], p[1], 1), (q[0], q[1], 1)))


def is_on_curve(point: Point) -> bool:
    x, y = point
    return 0 <= x < P and 0 <= y < P and (y * y - x * x * x - 7) % P == 0


def decompress(data: bytes) -> Point:
    """SEC1 compressed (33 bytes, 02/03 prefix) public key to a curve point."""
    if len(data) != 33 or data[0] not in (2, 3):
        raise DerivationError("not a compressed public key")
    x = int.from_bytes(data[1:], "big")
    if x >= P:
        raise DerivationError("public key x coordinate is out of range")
    y_squared = (pow(x, 3, P) + 7) % P
    y = pow(y_squared, (P + 1) // 4, P)  # P = 3 mod 4
    if y * y % P != y_squared:
        raise DerivationError("public key is not on secp256k1")
    if (y & 1) != (data[0] & 1):
        y = P - y
    return (x, y)


def compress(point: Point) -> bytes:
    x, y = point
    return bytes([2 + (y & 1)]) + x.to_bytes(32, "big")


def derive_public_child(public_key: bytes, chain_code: bytes, index: int) -> tuple[bytes, bytes]:
    """BIP-32 CKDpub: (child compressed public key, child chain code) for a non-hardened index."""
    if not 0 <= index < HARDENED:
        raise DerivationError("hardened children cannot be derived from a public key")
    digest = hmac.new(chain_code, public_key + index.to_bytes(4, "big"), hashlib.sha512).digest()
    tweak = int.from_bytes(digest[:32], "big")
    if tweak >= N:
        raise DerivationError(f"child {index} is invalid (BIP-32: tweak out of range); skip this index")
    parent = decompress(public_key)
    child = add_points(scalar_base_multiply(tweak), parent) if tweak else parent
    if child is None:
        raise DerivationError(f"child {index} is invalid (BIP-32: point at infinity); skip this index")
    return compress(child), digest[32:]
