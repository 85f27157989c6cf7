"""Address and extended-public-key validation for EVM chains and Bitcoin, shared with onboarding.

Everything here is pure (no I/O): an employee's input either comes back in canonical form or raises
``errors.Invalid`` with a message that says exactly what is wrong — a bad checksum (a typo), the wrong
network (a testnet address on a mainnet appliance), an unsupported type (a Litecoin address, a
multisig extended key), or, worst of all, a *private* key pasted by mistake, which is refused
without echoing it.

- EVM: 0x + 40 hex digits; EIP-55 mixed-case checksum (Keccak-256 of the lower-case hex).
- Bitcoin: base58check P2PKH/P2SH with the network's version bytes; bech32 (segwit v0, BIP-173) and
  bech32m (v1+, BIP-350) with the network's human-readable part; BIP-32 extended public keys
  (xpub/ypub/zpub, tpub/upub/vpub on test networks) whose prefix says which addresses to derive.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from appliance.errors import Invalid
from appliance.venues.chains.primitives import (
    DerivationError,
    derive_public_child,
    hash160,
    keccak256,
    parse_public_key,
)

# --------------------------------------------------------------------------------------------
# EVM


def evm_checksum(address: str) -> str:
    """EIP-55 form of a 0x-prefixed 40-hex-digit address (any case)."""
    lower = address[2:].lower()
    digest = keccak256(lower.encode("ascii")).hex()
    return "0x" + "".join(c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(lower))


def validate_evm_address(text: str, field: str = "address") -> str:
    """The EIP-55 checksummed address, or Invalid. All-lower and all-upper input carries no checksum
    and is accepted; mixed case must match the checksum exactly."""
    address = (text or "").strip()
    if not address:
        raise Invalid("Enter the wallet address (0x followed by 40 hexadecimal characters).", field=field)
    if address[:2] not in ("0x", "0X"):
        hint = " This looks like a Bitcoin address." if _looks_bitcoin(address) else ""
        raise Invalid("An EVM address starts with 0x followed by 40 hexadecimal characters." + hint, field=field)
    digits = address[2:]
    bad = sorted({c for c in digits if c not in "0123456789abcdefABCDEF"})
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        raise Invalid(f"Not an EVM address: {shown} is not a hexadecimal character (0-9, a-f).", field=field)
    if len(digits) != 40:
        what = "a transaction hash or a private key" if len(digits) == 64 else "not an address"
        raise Invalid(f"Wrong length: an EVM address has 40 hexadecimal characters after 0x, this one has "
                      f"{len(digits)} ({what}).", field=field)
    checksummed = evm_checksum("0x" + digits)
    if digits.lower() != digits and digits.upper() != digits and "0x" + digits != checksummed:
        raise Invalid("Bad checksum: the upper/lower-case letters do not match the EIP-55 checksum, so the "
                      "address probably has a typo. Copy it again from the wallet.", field=field)
    return checksummed


def _looks_bitcoin(text: str) -> bool:
    lower = text.lower()
    return lower.startswith(("bc1", "tb1", "bcrt1", "1", "3", "xpub", "ypub", "zpub"))


# --------------------------------------------------------------------------------------------
# Base58check

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


def b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, rem = divmod(number, 58)
        out = _B58[rem] + out
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + out


def b58decode(text: str) -> bytes:
    number = 0
    for c in text:
        if c not in _B58_INDEX:
            raise ValueError(c)
        number = number * 58 + _B58_INDEX[c]
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    pad = len(text) - len(text.lstrip("1"))
    return b"\0" * pad + body


def _checksum4(payload: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]


def b58check_encode(payload: bytes) -> str:
    return b58encode(payload + _checksum4(payload))


def b58check_decode(text: str) -> bytes | None:
    """The payload, or None when the 4-byte checksum does not match."""
    raw = b58decode(text)
    if len(raw) < 5 or _checksum4(raw[:-4]) != raw[-4:]:
        return None
    return raw[:-4]


# --------------------------------------------------------------------------------------------
# Bech32 / bech32m (reference algorithm of BIP-173 and BIP-350)

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
BECH32, BECH32M = 1, 0x2BC830A3


def _polymod(values: list[int]) -> int:
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= generator[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp]


def bech32_decode(text: str) -> tuple[str, list[int], int] | None:
    """(hrp, data without checksum, BECH32 or BECH32M), or None when malformed or the checksum fails."""
    if any(ord(c) < 33 or ord(c) > 126 for c in text) or (text.lower() != text and text.upper() != text):
        return None
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text) or len(text) > 90:
        return None
    if any(c not in _CHARSET for c in text[pos + 1:]):
        return None
    hrp, data = text[:pos], [_CHARSET.find(c) for c in text[pos + 1:]]
    const = _polymod(_hrp_expand(hrp) + data)
    if const not in (BECH32, BECH32M):
        return None
    return hrp, data[:-6], const


def bech32_encode(hrp: str, data: list[int], spec: int) -> str:
    values = _hrp_expand(hrp) + data
    polymod = _polymod([*values, 0, 0, 0, 0, 0, 0]) ^ spec
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in data + checksum)


def _convertbits(data: list[int] | bytes, frombits: int, tobits: int, pad: bool) -> list[int] | None:
    acc, bits, out = 0, 0, []
    maxv = (1 << tobits) - 1
    for value in data:
        if value < 0 or value >> frombits:
            return None
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        return None
    return out


def segwit_encode(hrp: str, version: int, program: bytes) -> str:
    data = _convertbits(program, 8, 5, True)
    assert data is not None
    return bech32_encode(hrp, [version, *data], BECH32 if version == 0 else BECH32M)


# --------------------------------------------------------------------------------------------
# Bitcoin networks and extended keys


@dataclass(frozen=True)
class Network:
    name: str
    hrp: str
    p2pkh: int
    p2sh: int
    # Extended public key version -> address type derived from it (SLIP-132 prefixes).
    xpub_versions: dict[int, str]


_MAIN_XPUBS = {0x0488B21E: "p2pkh", 0x049D7CB2: "p2sh-p2wpkh", 0x04B24746: "p2wpkh"}
_TEST_XPUBS = {0x043587CF: "p2pkh", 0x044A5262: "p2sh-p2wpkh", 0x045F1CEB: "p2wpkh"}
NETWORKS = {
    "mainnet": Network("mainnet", "bc", 0x00, 0x05, _MAIN_XPUBS),
    "testnet": Network("testnet", "tb", 0x6F, 0xC4, _TEST_XPUBS),
    "signet": Network("signet", "tb", 0x6F, 0xC4, _TEST_XPUBS),
    "regtest": Network("regtest", "bcrt", 0x6F, 0xC4, _TEST_XPUBS),
}
XPUB_NAMES = {0x0488B21E: "xpub", 0x049D7CB2: "ypub", 0x04B24746: "zpub",
              0x043587CF: "tpub", 0x044A5262: "upub", 0x045F1CEB: "vpub"}
PRIVATE_VERSIONS = {0x0488ADE4: "xprv", 0x049D7878: "yprv", 0x04B2430C: "zprv", 0x04358394: "tprv",
                    0x044A4E28: "uprv", 0x045F18BC: "vprv", 0x0295B005: "Yprv", 0x02AA7A99: "Zprv",
                    0x024285B5: "Uprv", 0x02575048: "Vprv"}
MULTISIG_VERSIONS = {0x0295B43F: "Ypub", 0x02AA7ED3: "Zpub", 0x024289EF: "Upub", 0x025735EB: "Vpub"}
_NETWORK_OF_HRP = {"bc": "mainnet", "tb": "testnet or signet", "bcrt": "regtest"}


@dataclass(frozen=True)
class ExtendedPublicKey:
    """A BIP-32 account-level extended public key; receive addresses are child 0/i, change 1/i."""

    text: str
    network: str
    address_type: str  # p2pkh | p2sh-p2wpkh | p2wpkh
    depth: int
    chain_code: bytes
    public_key: bytes

    def child(self, *path: int) -> tuple[bytes, bytes]:
        key, code = self.public_key, self.chain_code
        for index in path:
            key, code = derive_public_child(key, code, index)
        return key, code

    def address(self, chain: int, index: int) -> str:
        return _derived_address(self, chain, index)


@lru_cache(maxsize=20_000)
def _derived_address(xpub: ExtendedPublicKey, chain: int, index: int) -> str:
    # Cached per process: discovery re-derives the same addresses on every run.
    branch = _branch(xpub.public_key, xpub.chain_code, chain)
    key, _code = derive_public_child(branch[0], branch[1], index)
    return address_of_pubkey(key, xpub.address_type, NETWORKS[xpub.network])


@lru_cache(maxsize=1024)
def _branch(public_key: bytes, chain_code: bytes, chain: int) -> tuple[bytes, bytes]:
    return derive_public_child(public_key, chain_code, chain)


def address_of_pubkey(public_key: bytes, address_type: str, network: Network) -> str:
    key_hash = hash160(public_key)
    if address_type == "p2pkh":
        return b58check_encode(bytes([network.p2pkh]) + key_hash)
    if address_type == "p2sh-p2wpkh":
        redeem = b"\x00\x14" + key_hash
        return b58check_encode(bytes([network.p2sh]) + hash160(redeem))
    if address_type == "p2wpkh":
        return segwit_encode(network.hrp, 0, key_hash)
    raise ValueError(f"unknown address type {address_type}")


@dataclass(frozen=True)
class BitcoinTarget:
    """A validated Bitcoin input: one address, or an extended public key standing for a wallet."""

    canonical: str
    kind: str  # p2pkh | p2sh | p2wpkh | p2wsh | p2tr | witness_v<N> | xpub
    network: str
    xpub: ExtendedPublicKey | None = None


def validate_bitcoin(text: str, network: str, field: str = "address") -> BitcoinTarget:
    """Parse an address or extended public key for ``network``, or raise Invalid saying why not."""
    net = NETWORKS[network]
    value = (text or "").strip()
    if not value:
        raise Invalid("Enter a Bitcoin address or an extended public key (xpub, ypub or zpub).", field=field)
    if value[:2] in ("0x", "0X"):
        raise Invalid("Unsupported type: this is an EVM (Ethereum-style) address, not a Bitcoin address. "
                      "Add it under the matching EVM chain.", field=field)
    lower = value.lower()
    if "1" in lower and lower[: lower.rfind("1")] in _NETWORK_OF_HRP:
        return _validate_segwit(value, net, field)
    base58_ok = all(c in _B58_INDEX for c in value) and b58check_decode(value) is not None
    if not base58_ok and bech32_decode(value) is not None:
        return _validate_segwit(value, net, field)  # a valid bech32 string of another coin: say so
    return _validate_base58(value, net, field)


def _validate_segwit(value: str, net: Network, field: str) -> BitcoinTarget:
    if value.lower() != value and value.upper() != value:
        raise Invalid("Not a valid address: bech32 addresses are all lower case or all upper case, "
                      "not mixed. Copy it again from the wallet.", field=field)
    decoded = bech32_decode(value)
    if decoded is None:
        raise Invalid("Bad checksum: this bech32 address has a typo (its checksum does not match). "
                      "Copy it again from the wallet.", field=field)
    hrp, data, spec = decoded
    if hrp not in _NETWORK_OF_HRP:
        raise Invalid(f"Unsupported type: a bech32 address for {hrp!r}, which is not Bitcoin.", field=field)
    if hrp != net.hrp:
        raise Invalid(f"Wrong network: this is a Bitcoin {_NETWORK_OF_HRP[hrp]} address, and this appliance "
                      f"tracks {net.name}.", field=field)
    if not data:
        raise Invalid("Not a valid address: the bech32 data part is empty.", field=field)
    version = data[0]
    program = _convertbits(data[1:], 5, 8, False)
    if version > 16:
        raise Invalid(f"Not a valid address: witness version {version} does not exist.", field=field)
    if program is None or not 2 <= len(program) <= 40:
        raise Invalid("Not a valid address: the witness program has an invalid length or padding.", field=field)
    if version == 0 and len(program) not in (20, 32):
        raise Invalid("Not a valid address: a segwit v0 program is 20 or 32 bytes.", field=field)
    if (version == 0) != (spec == BECH32):
        which = "bech32 (BIP-173)" if version == 0 else "bech32m (BIP-350)"
        raise Invalid(f"Bad checksum: a witness version {version} address must use the {which} checksum. "
                      "The address is corrupted or was made by faulty software.", field=field)
    if version == 0:
        kind = "p2wpkh" if len(program) == 20 else "p2wsh"
    elif version == 1 and len(program) == 32:
        kind = "p2tr"
    else:
        kind = f"witness_v{version}"
    return BitcoinTarget(value.lower(), kind, net.name)


def _validate_base58(value: str, net: Network, field: str) -> BitcoinTarget:
    bad = sorted({c for c in value if c not in _B58_INDEX})
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        raise Invalid(f"Not a Bitcoin address: {shown} cannot appear in one (0, O, I and l are never used).",
                      field=field)
    payload = b58check_decode(value)
    if payload is None:
        raise Invalid("Bad checksum: this address or key has a typo (its base58check checksum does not match). "
                      "Copy it again from the wallet.", field=field)
    if len(payload) == 78:
        return _validate_extended(value, payload, net, field)
    if payload[:1] in (b"\x80", b"\xef") and len(payload) in (33, 34):
        raise Invalid("This is a PRIVATE key (WIF), which can spend the funds. Do not share it; submit the "
                      "wallet's address or extended public key instead.", field=field)
    if len(payload) != 21:
        raise Invalid("Unsupported type: not a Bitcoin address or extended public key.", field=field)
    version = payload[0]
    if version in (net.p2pkh, net.p2sh):
        return BitcoinTarget(value, "p2pkh" if version == net.p2pkh else "p2sh", net.name)
    for other in NETWORKS.values():
        if version in (other.p2pkh, other.p2sh):
            where = "mainnet" if other.name == "mainnet" else "testnet, signet or regtest"
            raise Invalid(f"Wrong network: this is a Bitcoin {where} address, and this appliance tracks "
                          f"{net.name}.", field=field)
    raise Invalid(f"Unsupported type: version byte 0x{version:02x} is not a Bitcoin address (another coin?).",
                  field=field)


def _validate_extended(value: str, payload: bytes, net: Network, field: str) -> BitcoinTarget:
    version = int.from_bytes(payload[:4], "big")
    if version in PRIVATE_VERSIONS or payload[45] == 0:
        name = PRIVATE_VERSIONS.get(version, "extended private key")
        raise Invalid(f"This is an extended PRIVATE key ({name}), which can spend the funds. Do not share it; "
                      "export the extended PUBLIC key (xpub, ypub or zpub) from the wallet instead.", field=field)
    if version in MULTISIG_VERSIONS:
        raise Invalid(f"Unsupported type: multisig extended keys ({MULTISIG_VERSIONS[version]}) are not "
                      "supported; submit the multisig wallet's addresses instead.", field=field)
    if version not in XPUB_NAMES:
        raise Invalid(f"Unsupported type: unknown extended key version 0x{version:08x}.", field=field)
    if version not in net.xpub_versions:
        where = "mainnet" if version in _MAIN_XPUBS else "test network"
        raise Invalid(f"Wrong network: {XPUB_NAMES[version]} is a {where} extended public key, and this appliance "
                      f"tracks {net.name}.", field=field)
    depth = payload[4]
    chain_code, key = payload[13:45], payload[45:78]
    try:
        parse_public_key(key)
    except DerivationError as exc:
        raise Invalid(f"Not a valid extended public key: {exc}.", field=field) from None
    xpub = ExtendedPublicKey(value, net.name, net.xpub_versions[version], depth, chain_code, key)
    return BitcoinTarget(value, "xpub", net.name, xpub)
