"""Keccak-256, the hash Ethereum uses (EIP-55 checksums, event topics, function selectors).

Neither hashlib nor ``cryptography`` offers it: ``hashlib.sha3_256`` is FIPS-202 SHA-3, which pads
with 0x06 where the original Keccak submission Ethereum adopted pads with 0x01, so the digests differ.
This is the plain Keccak-f[1600] sponge; inputs here are tiny (addresses, signatures), so speed is
not a concern. ``sha3_256`` is exposed only so the tests can check the permutation against hashlib.
"""

from __future__ import annotations

_MASK = (1 << 64) - 1
_ROUND_CONSTANTS = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)
# Rotation offsets r[x][y] of the rho step.
_ROTATIONS = (
    (0, 36, 3, 41, 18),
    (1, 44, 10, 45, 2),
    (62, 6, 43, 15, 61),
    (28, 55, 25, 21, 56),
    (27, 20, 39, 8, 14),
)


def _rol(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (64 - shift))) & _MASK if shift else value


def _permute(lanes: list[list[int]]) -> None:
    """Keccak-f[1600] on a 5x5 state of 64-bit lanes, indexed lanes[x][y]."""
    for rc in _ROUND_CONSTANTS:
        # theta
        c = [lanes[x][0] ^ lanes[x][1] ^ lanes[x][2] ^ lanes[x][3] ^ lanes[x][4] for x in range(5)]
        d = [c[(x - 1) % 5] ^ _rol(c[(x + 1) % 5], 1) for x in range(5)]
        for x in range(5):
            for y in range(5):
                lanes[x][y] ^= d[x]
        # rho and pi
        b = [[0] * 5 for _ in range(5)]
        for x in range(5):
            for y in range(5):
                b[y][(2 * x + 3 * y) % 5] = _rol(lanes[x][y], _ROTATIONS[x][y])
        # chi
        for x in range(5):
            for y in range(5):
                lanes[x][y] = b[x][y] ^ (~b[(x + 1) % 5][y] & b[(x + 2) % 5][y])
        # iota
        lanes[0][0] ^= rc


def _sponge(data: bytes, *, rate: int, pad: int, out_len: int) -> bytes:
    padded = bytearray(data)
    padded.append(pad)
    while len(padded) % rate:
        padded.append(0)
    padded[-1] |= 0x80
    lanes = [[0] * 5 for _ in range(5)]
    for offset in range(0, len(padded), rate):
        block = padded[offset:offset + rate]
        for i in range(rate // 8):
            x, y = i % 5, i // 5
            lanes[x][y] ^= int.from_bytes(block[8 * i:8 * i + 8], "little")
        _permute(lanes)
    out = bytearray()
    while True:
        for i in range(rate // 8):
            out += lanes[i % 5][i // 5].to_bytes(8, "little")
            if len(out) >= out_len:
                return bytes(out[:out_len])
        _permute(lanes)


def keccak256(data: bytes) -> bytes:
    """Ethereum's Keccak-256 (original padding 0x01)."""
    return _sponge(bytes(data), rate=136, pad=0x01, out_len=32)


def sha3_256(data: bytes) -> bytes:
    """FIPS-202 SHA3-256 from the same sponge; only for cross-checking against hashlib."""
    return _sponge(bytes(data), rate=136, pad=0x06, out_len=32)
