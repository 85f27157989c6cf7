from __future__ import annotations

from typing import Any


def token_for(client: Any, ta: Any, name: str) -> str:
    persona = ta.personas[name]
    response = client.post("/api/v1/auth/token", json={"username": name, "password": persona.password})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 86400
    return str(body["access_token"])


def test_token_and_employees(client: Any, ta: Any) -> None:
    token = token_for(client, ta, "alice")
    response = client.get("/api/v1/employees", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"employees": [], "total": 0, "currency": "USD", "next_cursor": None}


def test_login_page(client: Any) -> None:
    response = client.get("/login")
    assert response.status_code == 200
    assert b"Sign in" in response.data
