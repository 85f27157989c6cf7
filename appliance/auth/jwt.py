"""JWT access tokens for the API: HS256 only, keyed from the key provider (never the database).

Written here rather than taken from a library so that the accepted form is exactly one thing: the
header must be ``{"alg": "HS256", "typ": "JWT"}`` with nothing else (no ``kid``, ``jku``, ``x5u``,
``jwk``: nothing that lets the token choose its own key), and the claims ``iss``, ``aud``, ``sub``,
``iat``, ``exp``, ``jti`` and ``ep`` (the user's token epoch) must all be present and valid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

HEADER = {"alg": "HS256", "typ": "JWT"}
_HEADER_B64 = base64.urlsafe_b64encode(json.dumps(HEADER, separators=(",", ":")).encode()).rstrip(b"=").decode()
REQUIRED = ("iss", "aud", "sub", "iat", "exp", "jti", "ep")
LEEWAY_SECONDS = 30


class TokenInvalid(Exception):
    """The token must be refused; the reason is for logs and tests, never for the response body."""


@dataclass(frozen=True)
class Claims:
    user_id: int
    epoch: int
    jti: str
    issued_at: int
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def _unb64(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise TokenInvalid("bad base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:  # e.g. a length of 1 mod 4, which no padding makes whole
        raise TokenInvalid("bad base64url length") from None


def issue(key: bytes, *, user_id: int, epoch: int, ttl_seconds: int, issuer: str, audience: str,
          now: int | None = None) -> tuple[str, Claims]:
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": issuer, "aud": audience, "sub": str(user_id), "iat": issued, "exp": issued + ttl_seconds,
        "jti": secrets.token_hex(16), "ep": epoch,
    }
    payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signing_input = f"{_HEADER_B64}.{payload}".encode()
    signature = _b64(hmac.new(key, signing_input, hashlib.sha256).digest())
    return f"{_HEADER_B64}.{payload}.{signature}", Claims(user_id, epoch, str(claims["jti"]), issued,
                                                           issued + ttl_seconds)


def verify(token: str, key: bytes, *, issuer: str, audience: str, max_ttl_seconds: int,
           now: int | None = None) -> Claims:
    """Check structure, header, signature and claims; raise TokenInvalid on any deviation."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenInvalid("not three segments")
    header_b64, payload_b64, signature_b64 = parts
    try:
        header = json.loads(_unb64(header_b64))
    except ValueError:
        raise TokenInvalid("header is not JSON") from None
    if header != HEADER:
        raise TokenInvalid("header is not exactly {alg: HS256, typ: JWT}")
    expected = hmac.new(key, f"{header_b64}.{payload_b64}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _unb64(signature_b64)):
        raise TokenInvalid("bad signature")
    try:
        claims = json.loads(_unb64(payload_b64))
    except ValueError:
        raise TokenInvalid("payload is not JSON") from None
    if not isinstance(claims, dict) or any(name not in claims for name in REQUIRED):
        raise TokenInvalid("missing required claims")
    current = int(now if now is not None else time.time())
    iat, exp, ep = claims["iat"], claims["exp"], claims["ep"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (iat, exp, ep)):
        raise TokenInvalid("iat, exp and ep must be integers")
    if claims["iss"] != issuer:
        raise TokenInvalid("wrong issuer")
    aud: Any = claims["aud"]
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise TokenInvalid("wrong audience")
    if exp <= current:
        raise TokenInvalid("expired")
    if iat > current + LEEWAY_SECONDS:
        raise TokenInvalid("issued in the future")
    if exp - iat > max_ttl_seconds:
        raise TokenInvalid("lifetime longer than allowed")
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub.isdigit():
        raise TokenInvalid("bad subject")
    if not isinstance(claims["jti"], str) or not claims["jti"]:
        raise TokenInvalid("bad jti")
    jti: str = claims["jti"]
    return Claims(int(sub), ep, jti, iat, exp)


class VerifiedTokens:
    """A bounded memo of tokens whose signature and claims already verified.

    Verification is deterministic for a given key, so a token seen before need not be re-parsed
    and re-MACed on every request; expiry is still checked each time, and the caller still checks
    the user's epoch and state against the in-memory auth state.
    """

    def __init__(self, size: int = 10000) -> None:
        import collections
        import threading

        self._items: collections.OrderedDict[str, Claims] = collections.OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def recall(self, token: str) -> Claims | None:
        """The claims of ``token`` if it verified before (None if it did not); TokenInvalid if it expired.
        Takes no lock (a dict read is atomic): on a busy server a lock taken by every request convoys the
        threads."""
        claims = self._items.get(token)
        if claims is not None and claims.expires_at <= time.time():
            raise TokenInvalid("expired")
        return claims

    def verify(self, token: str, key: bytes, *, issuer: str, audience: str, max_ttl_seconds: int) -> Claims:
        """``token``'s claims: remembered, or verified now (expiry included) and remembered. Eviction is
        oldest-inserted first, under the lock."""
        claims = self.recall(token)
        if claims is None:
            claims = verify(token, key, issuer=issuer, audience=audience, max_ttl_seconds=max_ttl_seconds)
            with self._lock:
                self._items[token] = claims
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
        return claims
