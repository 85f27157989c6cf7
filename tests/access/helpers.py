from __future__ import annotations

from typing import Any


def token(client: Any, ta: Any, name: str) -> str:
    response = client.post("/api/v1/auth/token", json={"username": name, "password": ta.personas[name].password})
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["access_token"])


def auth(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def api_key(client: Any, ta: Any, *, owner: str = "alice", name: str = "siem", role: str | None = None) -> str:
    body: dict[str, Any] = {"username": owner, "name": name}
    if role:
        body["role"] = role
    response = client.post("/api/v1/apikeys", json=body, headers=auth(token(client, ta, "alice")))
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["api_key"])


def login_session(client: Any, ta: Any, name: str) -> None:
    client.get("/login")
    with client.session_transaction() as s:
        csrf = s["csrf"]
    response = client.post("/login", data={"username": name, "password": ta.personas[name].password,
                                           "csrf_token": csrf})
    assert response.status_code == 302, response.data[:500]


def csrf_of(client: Any) -> str:
    with client.session_transaction() as s:
        return str(s["csrf"])
