"""JWT access tokens: 24 h, algorithm pinned, every claim checked, killed by epoch changes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from appliance.auth import jwt
from tests.access.helpers import auth, token


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    h = b64(json.dumps(header, separators=(",", ":")).encode())
    p = b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = b64(hmac.new(key, f"{h}.{p}".encode(), hashlib.sha256).digest())
    return f"{h}.{p}.{sig}"


def good_claims(ta: Any, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": "vigatra", "aud": "vigatra-api", "sub": str(ta.personas["alice"].user_id), "iat": now,
              "exp": now + 3600, "jti": "x" * 16, "ep": 0}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def test_token_shape(client: Any, ta: Any) -> None:
    response = client.post("/api/v1/auth/token", json={"username": "alice", "password": ta.personas["alice"].password})
    body = response.get_json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 86400
    header = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[0] + "=="))
    assert header == {"alg": "HS256", "typ": "JWT"}


def test_generic_failure_for_unknown_user_and_wrong_password(client: Any, ta: Any) -> None:
    unknown = client.post("/api/v1/auth/token", json={"username": "mallory", "password": "x" * 20})
    wrong = client.post("/api/v1/auth/token", json={"username": "alice", "password": "x" * 20})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.get_json() == wrong.get_json()


@pytest.mark.parametrize("case", [
    "alg-none", "hs512", "rs256", "kid", "jku", "edited-payload", "wrong-key", "expired", "no-exp", "wrong-aud",
    "wrong-iss", "future-iat", "too-long", "no-jti", "garbage", "two-parts",
])
def test_forgeries_are_401(client: Any, ta: Any, case: str) -> None:
    key = ta.appliance.keys.derive("jwt")
    valid_header = {"alg": "HS256", "typ": "JWT"}
    tokens = {
        "alg-none": lambda: forge({"alg": "none", "typ": "JWT"}, good_claims(ta), key).rsplit(".", 1)[0] + ".",
        "hs512": lambda: forge({"alg": "HS512", "typ": "JWT"}, good_claims(ta), key),
        "rs256": lambda: forge({"alg": "RS256", "typ": "JWT"}, good_claims(ta), key),
        "kid": lambda: forge({**valid_header, "kid": "../../dev/null"}, good_claims(ta), b""),
        "jku": lambda: forge({**valid_header, "jku": "https://evil.example/keys"}, good_claims(ta), key),
        "edited-payload": lambda: _edit_payload(token(client, ta, "victor"), sub=str(ta.personas["alice"].user_id)),
        "wrong-key": lambda: forge(valid_header, good_claims(ta), b"k" * 32),
        "expired": lambda: forge(valid_header, good_claims(ta, iat=int(time.time()) - 7200,
                                                             exp=int(time.time()) - 60), key),
        "no-exp": lambda: forge(valid_header, good_claims(ta, exp=None), key),
        "wrong-aud": lambda: forge(valid_header, good_claims(ta, aud="other"), key),
        "wrong-iss": lambda: forge(valid_header, good_claims(ta, iss="other"), key),
        "future-iat": lambda: forge(valid_header, good_claims(ta, iat=int(time.time()) + 600,
                                                             exp=int(time.time()) + 3600), key),
        "too-long": lambda: forge(valid_header, good_claims(ta, exp=int(time.time()) + 25 * 3600), key),
        "no-jti": lambda: forge(valid_header, good_claims(ta, jti=None), key),
        "garbage": lambda: "eyJhbGciOi.not.atoken",
        "two-parts": lambda: "abc.def",
    }
    response = client.get("/api/v1/employees", headers=auth(tokens[case]()))
    assert response.status_code == 401
    body = response.get_json()
    assert body == {"error": {"code": "unauthenticated", "message": "invalid or expired access token"}}


def _edit_payload(value: str, **changes: Any) -> str:
    h, p, s = value.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    claims.update(changes)
    return f"{h}.{b64(json.dumps(claims).encode())}.{s}"


def test_the_legit_forge_helper_is_accepted(client: Any, ta: Any) -> None:
    """The forgery cases above are meaningful only if a correctly made token is accepted."""
    key = ta.appliance.keys.derive("jwt")
    good = forge({"alg": "HS256", "typ": "JWT"}, good_claims(ta), key)
    assert client.get("/api/v1/employees", headers=auth(good)).status_code == 200


def test_a_token_accepted_before_is_refused_once_it_expires(client: Any, ta: Any) -> None:
    """Verified tokens are remembered (no MAC per request); expiry is still checked on every request."""
    key = ta.appliance.keys.derive("jwt")
    expires = int(time.time()) + 2
    short = forge({"alg": "HS256", "typ": "JWT"}, good_claims(ta, exp=expires), key)
    assert client.get("/api/v1/employees", headers=auth(short)).status_code == 200
    assert ta.appliance.auth.tokens.recall(short) is not None
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    response = client.get("/api/v1/employees", headers=auth(short))
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == "invalid or expired access token"


def test_disabled_password_changed_or_role_lost_kills_tokens(client: Any, ta: Any) -> None:
    admin = auth(token(client, ta, "alice"))
    for action in ("disable", "password", "role"):
        carol = token(client, ta, "carol")
        assert client.get("/api/v1/employees", headers=auth(carol)).status_code == 200
        carol_id = ta.personas["carol"].user_id
        if action == "disable":
            assert client.put(f"/api/v1/users/{carol_id}/active", json={"active": False},
                              headers=admin).status_code == 200
        elif action == "password":
            from appliance.services import identity

            with ta.store.unit_of_work() as session:
                identity.set_password(session, carol_id, ta.personas["carol"].password, ta.settings.auth)
            ta.appliance.auth.load(ta.store)
        else:
            assert client.put(f"/api/v1/users/{carol_id}/roles", json={"roles": ["Viewer"]},
                              headers=admin).status_code == 200
        assert client.get("/api/v1/employees", headers=auth(carol)).status_code == 401, action
        client.put(f"/api/v1/users/{carol_id}/active", json={"active": True}, headers=admin)
        client.put(f"/api/v1/users/{carol_id}/roles", json={"roles": ["Compliance"]}, headers=admin)


def test_jwt_module_rejects_alg_confusion_directly() -> None:
    key = b"k" * 32
    value, _ = jwt.issue(key, user_id=1, epoch=0, ttl_seconds=60, issuer="i", audience="a")
    assert jwt.verify(value, key, issuer="i", audience="a", max_ttl_seconds=60).user_id == 1
    with pytest.raises(jwt.TokenInvalid):
        jwt.verify(value, key, issuer="i", audience="other", max_ttl_seconds=60)
