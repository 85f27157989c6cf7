"""Browser sessions: cookie flags, rotation at login (no fixation), CSRF, logout, timeouts."""

from __future__ import annotations

import time
from typing import Any

from tests.access.helpers import csrf_of, login_session


def session_cookie(client: Any) -> Any:
    return client.get_cookie("__Host-vigatra")


def test_cookie_flags_after_login(client: Any, ta: Any) -> None:
    client.get("/login")
    with client.session_transaction() as s:
        csrf = s["csrf"]
    response = client.post("/login", data={"username": "alice", "password": ta.personas["alice"].password,
                                           "csrf_token": csrf})
    header = next(v for k, v in response.headers.items() if k == "Set-Cookie" and v.startswith("__Host-vigatra="))
    lowered = header.lower()
    assert "secure" in lowered
    assert "httponly" in lowered
    assert "samesite=lax" in lowered
    assert "path=/" in lowered
    assert "domain=" not in lowered


def test_session_id_rotates_at_login(client: Any, ta: Any) -> None:
    client.get("/login")
    with client.session_transaction() as s:
        s["sid"] = "attacker-chosen-id"
    login_session(client, ta, "alice")
    with client.session_transaction() as s:
        assert s["sid"] != "attacker-chosen-id"
        first = s["sid"]
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    login_session(client, ta, "alice")
    with client.session_transaction() as s:
        assert s["sid"] != first


def test_csrf_required_for_state_changes(client: Any, ta: Any) -> None:
    login_session(client, ta, "alice")
    missing = client.post("/admin/roles", data={"name": "Auditors", "perm": ["audit:read"]})
    wrong = client.post("/admin/roles", data={"name": "Auditors", "perm": ["audit:read"], "csrf_token": "nope"})
    assert missing.status_code == wrong.status_code == 403
    ok = client.post("/admin/roles", data={"name": "Auditors", "perm": ["audit:read"], "csrf_token": csrf_of(client)})
    assert ok.status_code == 302


def test_get_variants_of_actions_do_nothing(client: Any, ta: Any) -> None:
    login_session(client, ta, "alice")
    assert client.get("/admin/roles/1/delete").status_code == 405
    assert client.get("/logout").status_code == 405


def test_logout_invalidates_server_side(client: Any, ta: Any) -> None:
    login_session(client, ta, "alice")
    stolen = session_cookie(client).value
    assert client.get("/admin/users").status_code == 200
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    client.set_cookie("__Host-vigatra", stolen, domain="localhost", secure=True, path="/")
    replay = client.get("/admin/users")
    assert replay.status_code == 302
    assert "/login" in replay.headers["Location"]


def test_idle_timeout(client: Any, ta: Any) -> None:
    login_session(client, ta, "alice")
    with client.session_transaction() as s:
        s["seen"] = time.time() - ta.settings.auth.session_idle_minutes * 60 - 5
    assert client.get("/admin/users").status_code == 302


def test_absolute_timeout(client: Any, ta: Any) -> None:
    login_session(client, ta, "alice")
    with client.session_transaction() as s:
        s["iat"] = time.time() - ta.settings.auth.session_absolute_hours * 3600 - 5
    assert client.get("/admin/users").status_code == 302


def test_no_role_user_sees_an_empty_navigation(client: Any, ta: Any) -> None:
    login_session(client, ta, "nora")
    home = client.get("/")
    assert home.status_code == 200
    assert b"no role yet" in home.data
    for path in ("/employees", "/alerts", "/audit", "/admin/users", "/system"):
        assert client.get(path).status_code == 403


def test_login_over_plain_http_through_proxy_is_refused(client: Any, ta: Any) -> None:
    client.get("/login")
    response = client.post("/login", base_url="http://localhost", headers={"X-Forwarded-Proto": "http"},
                           data={"username": "alice", "password": ta.personas["alice"].password,
                                 "csrf_token": csrf_of(client)})
    assert response.status_code == 403


def test_stale_failure_counters_are_pruned(client: Any, ta: Any) -> None:
    import datetime as dt

    from sqlalchemy import func, select, update

    from appliance.services import login
    from appliance.store.models import LoginThrottle

    for name in ("ghost-1", "ghost-2"):
        client.post("/api/v1/auth/token", json={"username": name, "password": "x" * 20})
    with ta.store.unit_of_work() as session:
        session.execute(update(LoginThrottle).values(window_start=dt.datetime.now(dt.UTC) - dt.timedelta(days=2)))
    with ta.store.unit_of_work() as session:
        assert login.prune_throttle(session) >= 2
    with ta.store.read() as session:
        assert session.execute(select(func.count()).select_from(LoginThrottle)).scalar_one() == 0
