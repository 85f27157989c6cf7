"""The cryptographic primitives wallet addresses need, from well-kept libraries:

- Keccak-256 (Ethereum's EIP-55 checksums, event topics, function selectors) and RIPEMD-160 (Bitcoin's
  HASH160) from pycryptodome: hashlib has no Keccak (``sha3_256`` is FIPS-202 SHA-3, which pads
  differently), and OpenSSL 3 without its legacy provider has no RIPEMD-160;
- secp256k1 for BIP-32 public derivation (CKDpub: child = I_L*G + K_parent) from coincurve
  (libsecp256k1); ``cryptography`` cannot add two points.

No secret goes through here: the tweaks come from extended *public* keys. If either library cannot be
loaded, importing this module raises a ConfigError that says so; ``vigatra serve`` imports it and runs
:func:`check` at start-up, so a broken install stops the process with one line, not a wallet later.
"""

from __future__ import annotations

import hashlib
import hmac

from appliance.errors import ConfigError

try:
    from coincurve import PublicKey
    from Crypto.Hash import RIPEMD160, keccak
except ImportError as exc:  # a broken install: one clear line at start-up, not a traceback on first use
    raise ConfigError(
        f"cannot load {exc.name or 'a required library'}: pycryptodome (Keccak-256, RIPEMD-160) and coincurve "
        "(secp256k1) are required for wallet addresses; install the appliance with its locked dependencies "
        "(offline-wheels/requirements.lock)") from exc

P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F  # the field prime
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141  # the group order
HARDENED = 0x80000000


class DerivationError(ValueError):
    """A public key or derivation step is invalid (not on the curve, hardened index, bad tweak)."""


def keccak256(data: bytes) -> bytes:
    return keccak.new(data=data, digest_bits=256).digest()


def ripemd160(data: bytes) -> bytes:
    return RIPEMD160.new(data).digest()


def hash160(data: bytes) -> bytes:
    """RIPEMD-160 of SHA-256: the 20-byte hash in P2PKH, P2WPKH and P2SH-P2WPKH scripts."""
    return ripemd160(hashlib.sha256(data).digest())


def parse_public_key(data: bytes) -> PublicKey:
    """A SEC1 compressed public key (33 bytes, 02/03 prefix); DerivationError naming what is wrong."""
    if len(data) != 33 or data[0] not in (2, 3):
        raise DerivationError("not a compressed public key")
    if int.from_bytes(data[1:], "big") >= P:
        raise DerivationError("public key x coordinate is out of range")
    try:
        return PublicKey(data)
    except ValueError:
        raise DerivationError("public key is not on secp256k1") from None


def derive_public_child(public_key: bytes, chain_code: bytes, index: int) -> tuple[bytes, bytes]:
    """BIP-32 CKDpub: (child compressed public key, child chain code) for a non-hardened index."""
    if not 0 <= index < HARDENED:
        raise DerivationError("hardened children cannot be derived from a public key")
    digest = hmac.new(chain_code, public_key + index.to_bytes(4, "big"), hashlib.sha512).digest()
    tweak = digest[:32]
    if int.from_bytes(tweak, "big") >= N:
        raise DerivationError(f"child {index} is invalid (BIP-32: tweak out of range); skip this index")
    parent = parse_public_key(public_key)
    if not any(tweak):
        return public_key, digest[32:]
    try:
        child = parent.add(tweak)
    except ValueError:
        raise DerivationError(f"child {index} is invalid (BIP-32: point at infinity); skip this index") from None
    return child.format(compressed=True), digest[32:]


def check() -> None:
    """Known answers for each primitive (ConfigError if one is wrong): run at start-up."""
    answers = {
        "Keccak-256": (keccak256(b"abc").hex(), "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"),
        "RIPEMD-160": (ripemd160(b"abc").hex(), "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc"),
        "secp256k1": (derive_public_child(_GENERATOR, bytes(32), 0)[0].hex(), _CHILD_OF_GENERATOR),
    }
    wrong = [name for name, (got, expected) in answers.items() if got != expected]
    if wrong:
        raise ConfigError(f"the {', '.join(wrong)} implementation gives wrong answers; reinstall the appliance")


# The compressed generator point (private key 1) and its CKDpub child 0 under an all-zero chain code.
_GENERATOR = bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
_CHILD_OF_GENERATOR = "036c0047046bdc1701884d3fde89878a1c04f9730a1c0a6bcaa6f4654fed3987a9"
