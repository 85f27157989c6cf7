"""JWT access tokens for the API: HS256 only, keyed from the key provider (never the database).

PyJWT signs and verifies (algorithm pinned to HS256, signature, ``exp``, ``iss``, ``aud``, required
claims). On top of it this module keeps the accepted form exactly one thing: the header must be
``{"alg": "HS256", "typ": "JWT"}`` with nothing else (no ``kid``, ``jku``, ``x5u``, ``jwk``: nothing that
lets the token choose its own key), every segment strict base64url, and the claims ``iss``, ``aud``,
``sub``, ``iat``, ``exp``, ``jti`` and ``ep`` (the user's token epoch) all present, of their types, with
a lifetime no longer than allowed.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
HEADER = {"alg": ALGORITHM, "typ": "JWT"}
REQUIRED = ("iss", "aud", "sub", "iat", "exp", "jti", "ep")
LEEWAY_SECONDS = 30  # for ``iat`` only: a token is never accepted after its ``exp``
# Three base64url segments, nothing else (PyJWT's decoder would skip characters outside the alphabet).
_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_OPTIONS: Any = {"require": list(REQUIRED), "verify_iat": False, "enforce_minimum_key_length": True}


class TokenInvalid(Exception):
    """The token must be refused; the reason is for logs and tests, never for the response body."""


@dataclass(frozen=True)
class Claims:
    user_id: int
    epoch: int
    jti: str
    issued_at: int
    expires_at: int


def issue(key: bytes, *, user_id: int, epoch: int, ttl_seconds: int, issuer: str, audience: str
          ) -> tuple[str, Claims]:
    issued = int(time.time())
    claims = Claims(user_id, epoch, secrets.token_hex(16), issued, issued + ttl_seconds)
    payload = {"iss": issuer, "aud": audience, "sub": str(user_id), "iat": claims.issued_at,
               "exp": claims.expires_at, "jti": claims.jti, "ep": epoch}
    return jwt.encode(payload, key, algorithm=ALGORITHM, headers={"typ": "JWT"}), claims


def verify(token: str, key: bytes, *, issuer: str, audience: str, max_ttl_seconds: int) -> Claims:
    """Check shape, header, signature and claims; raise TokenInvalid on any deviation."""
    if not _SHAPE.fullmatch(token):
        raise TokenInvalid("not three base64url segments")
    try:
        if jwt.get_unverified_header(token) != HEADER:
            raise TokenInvalid("header is not exactly {alg: HS256, typ: JWT}")
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], issuer=issuer, audience=audience,
                            options=_OPTIONS)
    except jwt.PyJWTError as exc:
        raise TokenInvalid(f"{type(exc).__name__}: {exc}") from None
    iat, exp, ep = claims["iat"], claims["exp"], claims["ep"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (iat, exp, ep)):
        raise TokenInvalid("iat, exp and ep must be integers")
    if iat > time.time() + LEEWAY_SECONDS:
        raise TokenInvalid("issued in the future")
    if exp - iat > max_ttl_seconds:
        raise TokenInvalid("lifetime longer than allowed")
    sub, jti = claims["sub"], claims["jti"]
    if not isinstance(sub, str) or not sub.isdigit():
        raise TokenInvalid("bad subject")
    if not isinstance(jti, str) or not jti:
        raise TokenInvalid("bad jti")
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
        A dict read needs no lock."""
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
