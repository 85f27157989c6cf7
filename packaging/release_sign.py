#!/usr/bin/env python3
"""Release signing for the offline bundle: Ed25519 signatures in minisign's format.

    release_sign.py keygen --secret-key FILE --public-key FILE
    release_sign.py sign --secret-key FILE FILE...        writes FILE.minisig next to each FILE
    release_sign.py verify --public-key FILE FILE         exit 0 when FILE.minisig verifies

Why minisign's format: a customer can check a release with the stock ``minisign -V -p KEY -m FILE``
(Debian package minisign) or with OpenSSL alone, which is how install.sh does it on a server that has
no minisign; the format is small, documented (https://jedisct1.github.io/minisign/) and needs
nothing but Ed25519 and BLAKE2b-512:

    public key:  "untrusted comment: ..." / base64("Ed" | key id (8) | public key (32))
    signature:   "untrusted comment: ..." / base64("ED" | key id (8) | Ed25519(BLAKE2b-512(file)))
                 "trusted comment: <text>" / base64(Ed25519(signature (64) | <text>))

The secret key is a PKCS#8 PEM file (mode 0600): keep it offline, on the release manager's machine
or token, never in the repository. The key id is the first 8 bytes of BLAKE2b over the public key.
Needs only ``cryptography`` (the dev venv has it).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import sys
import time
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PUBLIC_ALG = b"Ed"
HASHED_ALG = b"ED"


def key_id(public: bytes) -> bytes:
    return hashlib.blake2b(public, digest_size=8).digest()


def display_id(keyid: bytes) -> str:
    """minisign shows the key number as a little-endian 64-bit integer in upper-case hex."""
    return keyid[::-1].hex().upper()


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_secret(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SystemExit(f"{path} is not an Ed25519 private key")
    return key


def public_key_text(public: bytes) -> str:
    keyid = key_id(public)
    return (f"untrusted comment: minisign public key {display_id(keyid)}\n"
            f"{base64.b64encode(PUBLIC_ALG + keyid + public).decode()}\n")


def parse_public_key(text: str) -> tuple[bytes, bytes]:
    """(key id, 32-byte public key) from a minisign public key file (or its bare base64 line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    encoded = lines[1] if lines and lines[0].startswith("untrusted comment:") else (lines[0] if lines else "")
    raw = base64.b64decode(encoded, validate=True)
    if len(raw) != 42 or raw[:2] != PUBLIC_ALG:
        raise ValueError("not a minisign Ed25519 public key")
    return raw[2:10], raw[10:]


def sign_file(key: Ed25519PrivateKey, path: Path, *, now: float | None = None) -> str:
    public = public_bytes(key.public_key())
    keyid = key_id(public)
    digest = hashlib.blake2b(path.read_bytes()).digest()
    signature = key.sign(digest)
    trusted = f"timestamp:{int(now if now is not None else time.time())}\tfile:{path.name}\thashed"
    global_signature = key.sign(signature + trusted.encode())
    return (f"untrusted comment: signature from Vigatra release key {display_id(keyid)}\n"
            f"{base64.b64encode(HASHED_ALG + keyid + signature).decode()}\n"
            f"trusted comment: {trusted}\n"
            f"{base64.b64encode(global_signature).decode()}\n")


def verify_file(public_text: str, path: Path, signature_text: str) -> str:
    """The trusted comment when the signature verifies; ValueError naming the reason otherwise."""
    keyid, public = parse_public_key(public_text)
    lines = signature_text.splitlines()
    if len(lines) < 4 or not lines[2].startswith("trusted comment: "):
        raise ValueError("not a minisign signature file")
    raw = base64.b64decode(lines[1], validate=True)
    if len(raw) != 74 or raw[:2] not in (HASHED_ALG, PUBLIC_ALG):
        raise ValueError("not a minisign Ed25519 signature")
    if raw[2:10] != keyid:
        raise ValueError(f"signed by key {display_id(raw[2:10])}, not by {display_id(keyid)}")
    data = path.read_bytes()
    message = hashlib.blake2b(data).digest() if raw[:2] == HASHED_ALG else data
    verifier = Ed25519PublicKey.from_public_bytes(public)
    trusted = lines[2][len("trusted comment: "):]
    try:
        verifier.verify(raw[10:], message)
        verifier.verify(base64.b64decode(lines[3], validate=True), raw[10:] + trusted.encode())
    except InvalidSignature:
        raise ValueError("the signature does not verify") from None
    return trusted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    keygen = sub.add_parser("keygen")
    keygen.add_argument("--secret-key", required=True, type=Path)
    keygen.add_argument("--public-key", required=True, type=Path)
    sign = sub.add_parser("sign")
    sign.add_argument("--secret-key", required=True, type=Path)
    sign.add_argument("files", nargs="+", type=Path)
    verify = sub.add_parser("verify")
    verify.add_argument("--public-key", required=True, type=Path)
    verify.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    if args.command == "keygen":
        if args.secret_key.exists():
            raise SystemExit(f"{args.secret_key} exists; refusing to overwrite a release key")
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd = os.open(args.secret_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        args.public_key.write_text(public_key_text(public_bytes(key.public_key())))
        print(f"release key {display_id(key_id(public_bytes(key.public_key())))}: secret {args.secret_key} "
              f"(keep it offline), public {args.public_key} (give it to customers out of band)")
        return 0
    if args.command == "sign":
        key = load_secret(args.secret_key)
        for path in args.files:
            Path(f"{path}.minisig").write_text(sign_file(key, path))
        return 0
    try:
        trusted = verify_file(args.public_key.read_text(), args.file, Path(f"{args.file}.minisig").read_text())
    except (ValueError, OSError) as exc:
        print(f"release_sign.py: {args.file}: {exc}", file=sys.stderr)
        return 1
    print(f"signature and comment signature verified; trusted comment: {trusted}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
