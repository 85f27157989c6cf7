"""The authorization matrix, generated from the route table: every route x every default role x a
no-role user x anonymous, checked against the route's declared permission — no route left out.
And the audit side of it: every authenticated call writes exactly one event, denials included."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from appliance.boundary.routes import PUBLIC, route_table
from appliance.store.models import AuditEvent
from tests.support.routes import MISSING_ID, allowed, calls

PERSONA_ROLES: dict[str, tuple[str, ...] | None] = {
    "alice": ("Admin",), "carol": ("Compliance",), "victor": ("Viewer",), "nora": (), "anonymous": None,
}


def bearer(client: Any, ta: Any, name: str) -> dict[str, str]:
    if name == "anonymous":
        return {}
    response = client.post("/api/v1/auth/token", json={"username": name, "password": ta.personas[name].password})
    assert response.status_code == 200
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def audit_count(ta: Any) -> int:
    with ta.store.read() as session:
        return int(session.execute(select(func.count()).select_from(AuditEvent)).scalar_one())


def test_every_route_is_declared(flask_app: Any) -> None:
    rows = route_table(flask_app)
    assert rows, "no routes?"
    assert all(row.permission for row in rows)


@pytest.mark.parametrize("persona", list(PERSONA_ROLES))
def test_matrix(client: Any, ta: Any, flask_app: Any, persona: str) -> None:
    headers = bearer(client, ta, persona)
    roles = PERSONA_ROLES[persona]
    problems = []
    for call in calls(flask_app):
        if call.row.endpoint in ("web.logout",):
            continue  # would end the session under test; covered by the session tests
        before = audit_count(ta)
        response = client.open(call.path, method=call.method, headers=headers, json={} if call.method != "GET"
                               else None)
        status = response.status_code
        expected_ok = allowed(call.row, roles)
        if call.row.permission == PUBLIC:
            pass  # anyone may call; the answer depends on the input (a form without its CSRF token: 403)
        elif expected_ok and status in (401, 403):
            problems.append(f"{persona} {call.method} {call.path}: expected access, got {status}")
        if not expected_ok:
            want = (401, 302) if roles is None else (403,)
            if status not in want:
                problems.append(f"{persona} {call.method} {call.path}: expected {want}, got {status}")
        written = audit_count(ta) - before
        authenticated_call = roles is not None and call.row.permission != PUBLIC
        if authenticated_call and written != 1:
            problems.append(f"{persona} {call.method} {call.path}: {written} audit events (want exactly 1)")
    assert not problems, "\n".join(problems)


def test_audit_event_fields(client: Any, ta: Any) -> None:
    headers = {**bearer(client, ta, "carol"), "User-Agent": "matrix-test/1.0"}
    client.get(f"/api/v1/employees/{MISSING_ID}", headers=headers)
    answer = client.get("/api/v1/users", headers=headers)  # forbidden for Compliance
    with ta.store.read() as session:
        events = list(session.execute(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(2)).scalars())
        session.expunge_all()
    forbidden, viewed = events
    for event in (forbidden, viewed):
        assert event.actor_type == "user" and event.api_key_id is None
        assert event.user_id == ta.personas["carol"].user_id
        assert event.action and event.resource_type and event.resource_id
        assert event.ip_address == "127.0.0.1"
        assert event.timestamp.microsecond % 1000 == 0
        assert event.request_id and event.method == "GET"
        assert event.user_agent == "matrix-test/1.0" and event.detail == ""
    assert forbidden.request_id == answer.headers["X-Request-ID"]
    assert (viewed.path, forbidden.path) == (f"/api/v1/employees/{MISSING_ID}", "/api/v1/users")
    assert viewed.action != forbidden.action
    assert viewed.outcome == "failure"
    assert viewed.resource_type == "employees"
    assert viewed.resource_id == str(MISSING_ID)
    assert viewed.status == 404
    assert forbidden.status == 403
    assert forbidden.outcome == "denied"
    assert forbidden.resource_type == "users"
