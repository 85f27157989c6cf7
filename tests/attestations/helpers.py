"""Helpers of the attestation tests: a dashboard persona speaking the API, access persons, a campaign."""

from __future__ import annotations

import secrets
from typing import Any

from tests.access.helpers import auth, token
from tests.portal.conftest import csrf_of


class Dashboard:
    def __init__(self, client: Any, ta: Any, name: str) -> None:
        self.client, self.headers = client, auth(token(client, ta, name))

    def post(self, path: str, body: Any, status: int = 201) -> Any:
        response = self.client.post(f"/api/v1{path}", json=body, headers=self.headers)
        assert response.status_code == status, response.get_json()
        return response.get_json()

    def get(self, path: str, status: int = 200) -> Any:
        response = self.client.get(f"/api/v1{path}", headers=self.headers)
        assert response.status_code == status, response.get_json()
        return response.get_json()


def access_person(admin: Dashboard, name: str, since: str | None = None) -> int:
    local = name.split(maxsplit=1)[0].lower()
    body: dict[str, Any] = {"name": name, "email": f"{local}-{secrets.token_hex(3)}@example.com",
                            "access_person": True}
    if since:
        body["access_person_since"] = since
    answer = admin.post("/employees", body)
    assert answer["access_person"] is True
    return int(answer["id"])


def portal_post(employee: Any, path: str, body: Any, status: int = 201) -> Any:
    response = employee.post(f"/api/v1/me{path}", json=body, headers={"X-CSRF-Token": csrf_of(employee)})
    assert response.status_code == status, response.get_json()
    return response.get_json()


def portal_get(employee: Any, path: str, status: int = 200) -> Any:
    response = employee.get(f"/api/v1/me{path}")
    assert response.status_code == status, response.get_json()
    return response.get_json()


def task_of(campaign: dict[str, Any], employee_id: int) -> dict[str, Any]:
    return next(t for t in campaign["tasks"] if t["employee_id"] == employee_id)
