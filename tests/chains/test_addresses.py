"""Address validation shared with onboarding: EIP-55 (vectors from the EIP), BIP-173/BIP-350 bech32
vectors, base58check networks, and BIP-32 extended public keys (BIP-32 test vector 1, BIP-49, BIP-84).
Every refusal must say precisely what is wrong."""

from __future__ import annotations

import pytest

from appliance.errors import Invalid
from appliance.venues.chains.addresses import (
    _convertbits,
    b58check_decode,
    b58check_encode,
    bech32_decode,
    segwit_encode,
    validate_bitcoin,
    validate_evm_address,
)
from appliance.venues.chains.primitives import hash160
from tests.chains.conftest import TPUB, VPUB, ZPUB, fresh_xpub

# -- EVM ---------------------------------------------------------------------------------------

EIP55 = [
    # all caps
    "0x52908400098527886E0F7030069857D2E4169EE7", "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
    # all lower
    "0xde709f2102306220921060314715629080e2fb77", "0x27b1fdb04752bbc536007a920d24acb045561c26",
    # normal
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB", "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]


@pytest.mark.parametrize("address", EIP55)
def test_eip55_examples_are_valid_and_canonical(address: str) -> None:
    assert validate_evm_address(address) == address
    assert validate_evm_address(address.lower()) == address  # unchecksummed input is accepted...
    assert validate_evm_address("0x" + address[2:].upper()) == address  # ...in either single case


def test_mixed_case_must_match_the_checksum() -> None:
    good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    flipped = good[:3] + good[3].swapcase() + good[4:]
    with pytest.raises(Invalid, match="Bad checksum"):
        validate_evm_address(flipped)


@pytest.mark.parametrize(("text", "message"), [
    ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeA", "Wrong length.*38"),
    ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed00", "Wrong length.*42"),
    ("0x" + "ab" * 32, "Wrong length.*private key"),
    ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg", "'g' is not a hexadecimal"),
    ("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "starts with 0x"),
    ("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", "Bitcoin address"),
    ("", "Enter the wallet address"),
])
def test_evm_refusals_are_precise(text: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        validate_evm_address(text)


# -- Bitcoin: bech32 / bech32m (BIP-173, BIP-350) ------------------------------------------------

SEGWIT_VALID = [
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "0014751e76e8199196d454941c45d1b3a323f1433bd6", "p2wpkh"),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
     "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262", "p2wsh"),
    ("bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
     "5128751e76e8199196d454941c45d1b3a323f1433bd6751e76e8199196d454941c45d1b3a323f1433bd6", "witness_v1"),
    ("BC1SW50QGDZ25J", "6002751e", "witness_v16"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs", "5210751e76e8199196d454941c45d1b3a323", "witness_v2"),
    ("tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy",
     "0020000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433", "p2wsh"),
    ("tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
     "5120000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433", "p2tr"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
     "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798", "p2tr"),
]


def _script_of(address: str) -> str:
    decoded = bech32_decode(address)
    assert decoded is not None
    _hrp, data, _spec = decoded
    program = bytes(_convertbits(data[1:], 5, 8, False) or [])
    version = data[0]
    return bytes([version + 0x50 if version else 0, len(program)]).hex() + program.hex()


@pytest.mark.parametrize(("address", "script", "kind"), SEGWIT_VALID)
def test_bip173_bip350_valid_addresses(address: str, script: str, kind: str) -> None:
    network = "mainnet" if address.lower().startswith("bc1") else "testnet"
    target = validate_bitcoin(address, network)
    assert target.canonical == address.lower()
    assert target.kind.startswith(kind)
    assert _script_of(address) == script
    decoded = bech32_decode(address)
    assert decoded is not None
    assert segwit_encode(decoded[0], decoded[1][0], bytes.fromhex(script[4:])) == address.lower()


@pytest.mark.parametrize(("address", "message"), [
    ("tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut", "Unsupported type.*'tc'"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd", "Bad checksum.*bech32m"),
    ("tb1z0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqglt7rf", "Bad checksum.*bech32m"),
    ("BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL", "Bad checksum.*bech32m"),
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh", "Bad checksum.*bech32 \\(BIP-173\\)"),
    ("tb1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47", "Bad checksum.*bech32 \\(BIP-173\\)"),
    ("bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4", "Bad checksum"),
    ("BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R", "witness version 17"),
    ("bc1pw5dgrnzv", "invalid length"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav", "invalid length"),
    ("BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P", "v0 program is 20 or 32 bytes"),
    ("tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq", "not mixed"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf", "padding"),
    ("tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vpggkg4j", "padding"),
    ("bc1gmk9yu", "empty"),
])
def test_bip350_invalid_addresses_are_refused_precisely(address: str, message: str) -> None:
    network = "testnet" if address.lower().startswith("tb1") else "mainnet"
    with pytest.raises(Invalid, match=message):
        validate_bitcoin(address, network)


def test_a_typo_in_a_bech32_address_is_a_bad_checksum() -> None:
    good = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
    with pytest.raises(Invalid, match="Bad checksum"):
        validate_bitcoin(good[:-1] + "v", "mainnet")


# -- Bitcoin: networks and base58 ----------------------------------------------------------------

@pytest.mark.parametrize(("address", "network", "kind"), [
    ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "mainnet", "p2pkh"),
    ("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", "mainnet", "p2sh"),
    ("mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", "testnet", "p2pkh"),
    ("2MzQwSSnBHWHqSAqtTVQ6v47XtaisrJa1Vc", "testnet", "p2sh"),
    ("2Mww8dCYPUpKHofjgcXcBCEGmniw9CoaiD2", "signet", "p2sh"),
    ("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", "regtest", "p2wpkh"),
])
def test_network_addresses_are_accepted(address: str, network: str, kind: str) -> None:
    target = validate_bitcoin(address, network)
    assert (target.canonical, target.kind, target.network) == (address, kind, network)


@pytest.mark.parametrize(("address", "network", "message"), [
    ("tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", "mainnet", "Wrong network.*testnet or signet.*mainnet"),
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "testnet", "Wrong network.*mainnet.*testnet"),
    ("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", "signet", "Wrong network.*regtest"),
    ("mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", "mainnet", "Wrong network.*testnet, signet or regtest"),
    ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "regtest", "Wrong network.*mainnet"),
    ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb", "mainnet", "Bad checksum"),
    ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfN0", "mainnet", "'0' cannot appear"),
    ("LVg2kJoFNg45Nbpy53h7Fe1wKyeXVRhMH9", "mainnet", "Unsupported type.*0x30"),  # Litecoin P2PKH
    ("0x52908400098527886E0F7030069857D2E4169EE7", "mainnet", "Unsupported type.*EVM"),
    ("5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ", "mainnet", "PRIVATE key \\(WIF\\)"),
    ("", "mainnet", "Enter a Bitcoin address"),
])
def test_network_refusals_are_precise(address: str, network: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        validate_bitcoin(address, network)


def test_a_bech32_address_of_another_coin_is_unsupported() -> None:
    litecoin = segwit_encode("ltc", 0, bytes(range(20)))
    with pytest.raises(Invalid, match=r"Unsupported type.*'ltc'"):
        validate_bitcoin(litecoin, "mainnet")


# -- Extended public keys ------------------------------------------------------------------------

BIP84_ZPUB = ("zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGD"
              "tKsAYz2oz2AGutZYs")
BIP49_YPUB = ("ypub6Ww3ibxVfGzLrAH1PNcjyAWenMTbbAosGNB6VvmSEgytSER9azLDWCxoJwW7Ke7icmizBMXrzBx9979FfaHxHcrArf"
              "3zbeJJJUZPf663zsP")
BIP49_UPUB = ("upub5EFU65HtV5TeiSHmZZm7FUffBGy8UKeqp7vw43jYbvZPpoVsgU93oac7Wk3u6moKegAEWtGNF8DehrnHtv21XXEMYRU"
              "ocHqguyjknFHYfgY")


def test_bip84_zpub_derives_the_published_addresses() -> None:
    target = validate_bitcoin(BIP84_ZPUB, "mainnet")
    assert target.kind == "xpub" and target.xpub is not None and target.xpub.address_type == "p2wpkh"
    assert target.xpub.address(0, 0) == "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
    assert target.xpub.address(0, 1) == "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"
    assert target.xpub.address(1, 0) == "bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el"


def test_bip49_ypub_and_upub_derive_nested_segwit_addresses() -> None:
    main = validate_bitcoin(BIP49_YPUB, "mainnet").xpub
    assert main is not None and main.address_type == "p2sh-p2wpkh"
    assert main.address(0, 0) == "37VucYSaXLCAsxYyAPfbSi9eh4iEcbShgf"
    test = validate_bitcoin(BIP49_UPUB, "testnet").xpub
    assert test is not None
    # BIP-49's test vector: m/49'/1'/0'/0/0 on testnet.
    assert [test.address(0, i) for i in range(5)] == [
        "2Mww8dCYPUpKHofjgcXcBCEGmniw9CoaiD2", "2N55m54k8vr95ggehfUcNkdbUuQvaqG2GxK",
        "2N9LKph9TKtv1WLDfaUJp4D8EKwsyASYnGX", "2MyVXDzGJgATSdkhKHWvStpBoGEZb1fwjha",
        "2MuKeQzUHhUQWUZgx5AuNWoQ7YWx6vsXxrv"]


# BIP-32 test vector 1: the three steps of its chain that public derivation can take.
BIP32_TV1 = [
    ("xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ9xv5ski8PX9rL2dZXvgGDnw",
     1,
     "xpub6ASuArnXKPbfEwhqN6e3mwBcDTgzisQN1wXN9BJcM47sSikHjJf3UFHKkNAWbWMiGj7Wf5uMash7SyYq527Hqck2AxYysAA7xmALppuCkwQ"),
    ("xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5",
     2,
     "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV"),
    ("xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV",
     1000000000,
     "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy"),
]


@pytest.mark.parametrize(("parent", "index", "child"), BIP32_TV1)
def test_bip32_test_vector_1_public_derivation(parent: str, index: int, child: str) -> None:
    xpub = validate_bitcoin(parent, "mainnet").xpub
    assert xpub is not None
    key, code = xpub.child(index)
    payload = b58check_decode(parent)
    assert payload is not None
    serialized = b58check_encode(payload[:4] + bytes([xpub.depth + 1]) + hash160(xpub.public_key)[:4]
                                 + index.to_bytes(4, "big") + code + key)
    assert serialized == child


@pytest.mark.parametrize(("version", "network", "message"), [
    (ZPUB, "testnet", "Wrong network: zpub is a mainnet extended public key"),
    (VPUB, "mainnet", "Wrong network: vpub is a test network extended public key"),
    (TPUB, "mainnet", "Wrong network: tpub"),
    (0x02AA7ED3, "mainnet", "Unsupported type: multisig extended keys \\(Zpub\\)"),
    (0x0488ADE4, "mainnet", "extended PRIVATE key \\(xprv\\)"),
    (0x04B2430C, "mainnet", "extended PRIVATE key \\(zprv\\)"),
])
def test_extended_key_refusals(version: int, network: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        validate_bitcoin(fresh_xpub(version), network)


def test_extended_key_checks_checksum_and_curve_point() -> None:
    good = fresh_xpub()
    assert validate_bitcoin(good, "mainnet").kind == "xpub"
    typo = good[:-3] + ("A" if good[-3] != "A" else "B") + good[-2:]
    with pytest.raises(Invalid, match="Bad checksum"):
        validate_bitcoin(typo, "mainnet")
    payload = b58check_decode(good)
    assert payload is not None
    off_curve = b58check_encode(payload[:45] + b"\x02" + (5).to_bytes(32, "big"))
    with pytest.raises(Invalid, match="not on secp256k1"):
        validate_bitcoin(off_curve, "mainnet")


def test_bip32_bip84_private_key_is_refused_without_echoing_it() -> None:
    xprv = ("xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yu"
            "GBxrMPHi")
    with pytest.raises(Invalid) as caught:
        validate_bitcoin(xprv, "mainnet")
    assert "PRIVATE" in caught.value.message and xprv[4:] not in caught.value.message
