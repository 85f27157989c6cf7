"""A malformed access token is a 401, whatever is wrong with it.

Security review, finding 11: a token whose signature segment had a length of 1 mod 4 raised outside
the verifier's error handling (no padding makes such base64 whole): a 500 and a traceback on every
request. Every segment, at every length from empty to well past a real one's, with base64url
characters and without, and every number of segments, is refused with 401 — and nothing else.
"""

from __future__ import annotations

import string
from typing import Any

import pytest

from appliance.auth import jwt
from tests.access.helpers import auth, token

ALPHABET = string.ascii_letters + string.digits + "-_"


def _filler(length: int, alphabet: str = ALPHABET) -> str:
    return "".join(alphabet[(i * 7 + length) % len(alphabet)] for i in range(length))


def _variants(real: str) -> list[tuple[str, str]]:
    parts = real.split(".")
    out: list[tuple[str, str]] = []
    for segment in range(3):
        longest = len(parts[segment]) + 6
        for length in list(range(0, 13)) + list(range(longest - 8, longest)):
            for kind, alphabet in (("base64url", ALPHABET), ("other", "+/=~!.$ ")):
                value = _filler(length, alphabet)
                forged = parts.copy()
                forged[segment] = value
                out.append((f"segment {segment} length {length} {kind}", ".".join(forged)))
        # The real segment cut by one to four characters: every residue mod 4 of a genuine value.
        for cut in range(1, 5):
            forged = parts.copy()
            forged[segment] = parts[segment][:-cut]
            out.append((f"segment {segment} cut by {cut}", ".".join(forged)))
    for count in (1, 2, 4, 5):
        out.append((f"{count} segments", ".".join((parts * 2)[:count])))
    return out


def test_every_malformed_token_is_401(client: Any, ta: Any) -> None:
    real = token(client, ta, "alice")
    assert client.get("/api/v1/employees", headers=auth(real)).status_code == 200
    wrong: list[str] = []
    for name, forged in _variants(real):
        if forged == real or not forged.strip():
            continue
        response = client.get("/api/v1/employees", headers=auth(forged))
        if response.status_code != 401 or response.get_json()["error"]["code"] != "unauthenticated":
            wrong.append(f"{name}: {response.status_code}")
    assert wrong == []


@pytest.mark.parametrize("length", range(0, 9))
def test_the_verifier_refuses_each_signature_length_itself(length: int) -> None:
    key = b"k" * 32
    value, _claims = jwt.issue(key, user_id=1, epoch=0, ttl_seconds=60, issuer="i", audience="a")
    header, payload, _signature = value.split(".")
    with pytest.raises(jwt.TokenInvalid):
        jwt.verify(f"{header}.{payload}.{_filler(length)}", key, issuer="i", audience="a", max_ttl_seconds=60)
