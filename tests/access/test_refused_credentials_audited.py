"""Every refusal of a presented credential is an audit event.

Security review, finding 10 (first half): a request with a valid credential plus ``?token=`` (refused
400) left no audit row; neither did a revoked key or a forged token. Each refusal is now one event,
outcome ``denied``, naming the user and the key where they are known and nobody where they are not,
with the reason and a fingerprint of what was presented — never the credential itself.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from appliance.auth import apikeys
from appliance.store.models import AuditEvent
from tests.access.helpers import api_key, auth, csrf_of, login_session, token


def _event(ta: Any, response: Any) -> AuditEvent:
    with ta.store.read() as session:
        found = session.execute(select(AuditEvent).where(
            AuditEvent.request_id == response.headers["X-Request-ID"])).scalar_one()
        session.expunge(found)
        return found


def _refused(event: AuditEvent) -> dict[str, Any]:
    assert event.outcome == "denied"
    refused: dict[str, Any] = json.loads(event.detail)["refused"]
    return refused


def _nowhere(ta: Any, event: AuditEvent, secret: str) -> None:
    assert all(secret not in str(getattr(event, c.key)) for c in AuditEvent.__table__.columns)


def test_a_valid_credential_with_one_in_the_query_string(client: Any, ta: Any) -> None:
    alice = token(client, ta, "alice")
    response = client.get("/api/v1/employees?token=anything-at-all", headers=auth(alice))
    assert response.status_code == 400
    event = _event(ta, response)
    assert (event.user_id, event.actor_type, event.status) == (ta.personas["alice"].user_id, "user", 400)
    assert _refused(event)["credential"] == "query"
    _nowhere(ta, event, "anything-at-all")


def test_a_revoked_key(client: Any, ta: Any) -> None:
    key = api_key(client, ta, owner="alice", name="siem")
    admin = auth(token(client, ta, "alice"))
    key_id = client.get("/api/v1/apikeys", headers=admin).get_json()["api_keys"][0]["id"]
    client.post(f"/api/v1/apikeys/{key_id}/revoke", headers=admin)
    response = client.get("/api/v1/employees", headers=auth(key))
    assert response.status_code == 401
    event = _event(ta, response)
    assert (event.actor_type, event.api_key_id, event.user_id) == ("apikey", key_id, ta.personas["alice"].user_id)
    assert _refused(event) == {"credential": "apikey", "fingerprint": apikeys.fingerprint(key),
                               "reason": "revoked, or its owner's credentials changed or were disabled"}
    _nowhere(ta, event, key)
    _nowhere(ta, event, key.rsplit("_", 1)[1])


def test_a_forged_token_names_nobody(client: Any, ta: Any) -> None:
    real = token(client, ta, "alice")
    forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    response = client.get("/api/v1/employees", headers=auth(forged))
    assert response.status_code == 401
    event = _event(ta, response)
    assert (event.actor_type, event.user_id, event.api_key_id) == ("anonymous", None, None)
    assert _refused(event)["credential"] == "jwt"
    _nowhere(ta, event, forged)


def test_a_token_of_a_disabled_user_names_them(client: Any, ta: Any) -> None:
    carol = token(client, ta, "carol")
    carol_id = ta.personas["carol"].user_id
    client.put(f"/api/v1/users/{carol_id}/active", json={"active": False}, headers=auth(token(client, ta, "alice")))
    response = client.get("/api/v1/alerts", headers=auth(carol))
    assert response.status_code == 401
    event = _event(ta, response)
    assert (event.actor_type, event.user_id) == ("user", carol_id)
    assert _refused(event)["credential"] == "jwt"


def test_malformed_headers_and_keys(client: Any, ta: Any) -> None:
    for headers, credential in (({"Authorization": "Basic YWxpY2U6cGFzcw=="}, "authorization"),
                                ({"X-API-Key": "not-a-key-at-all"}, "apikey"),
                                ({"Authorization": "Bearer vgk_aaaaaaaaaa_" + "b" * 43}, "apikey")):
        response = client.get("/api/v1/employees", headers=headers)
        assert response.status_code == 401, headers
        assert _refused(_event(ta, response))["credential"] == credential
    over_http = client.get("/api/v1/employees", headers=auth("vgk_aaaaaaaaaa_" + "c" * 43), base_url="http://localhost")
    assert over_http.status_code == 403
    assert _refused(_event(ta, over_http))["reason"] == "sent over plain HTTP"


def test_a_replayed_session_after_sign_out(client: Any, ta: Any) -> None:
    login_session(client, ta, "victor")
    with client.session_transaction() as saved:
        cookie = dict(saved)
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    with client.session_transaction() as replay:
        replay.update(cookie)
    response = client.get("/employees")
    assert response.status_code == 302  # to the sign-in page: the session is not honoured
    event = _event(ta, response)
    assert (event.user_id, _refused(event)["credential"]) == (ta.personas["victor"].user_id, "session")


def test_no_credential_presented_is_no_event(client: Any, ta: Any) -> None:
    response = client.get("/api/v1/employees")
    assert response.status_code == 401
    with ta.store.read() as session:
        assert session.execute(select(AuditEvent).where(
            AuditEvent.request_id == response.headers["X-Request-ID"])).first() is None
