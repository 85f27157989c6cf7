"""Issue 26, finding 5: input that used to answer 500 answers 400 or 404 naming the problem, on both
databases, and changes nothing. Each case here answered 500 (or, for NUL on SQLite, stored it) before
every input was checked against its route's schema."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from appliance.store.models import ApiKey, Employee, OnboardingToken
from tests.access.helpers import auth, token

HUGE_ID = "99999999999999999999"  # > 2^64
JUST_PAST_BIGINT = str(2**63)
LAST_BIGINT = str(2**63 - 1)


@pytest.fixture
def admin(client: Any, ta: Any) -> dict[str, str]:
    return auth(token(client, ta, "alice"))


def count(ta: Any, model: Any) -> int:
    with ta.store.read() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def new_employee(client: Any, admin: dict[str, str], email: str = "ada@example.com") -> int:
    response = client.post("/api/v1/employees", json={"name": "Ada", "email": email}, headers=admin)
    assert response.status_code == 201, response.get_json()
    return int(response.get_json()["id"])


def invalid(response: Any, *fields: str) -> dict[str, Any]:
    assert response.status_code == 400, (response.status_code, response.get_data(as_text=True)[:500])
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request"
    for field in fields:
        assert field in error["fields"], error
        assert field in error["message"] or field == "body", error
    return dict(error)


@pytest.mark.parametrize("path", [
    f"/api/v1/employees/{HUGE_ID}",
    f"/api/v1/employees/{JUST_PAST_BIGINT}",
    f"/api/v1/employees/{HUGE_ID}/transactions",
    f"/api/v1/employees/1/transactions/{HUGE_ID}",
    f"/api/v1/users/{JUST_PAST_BIGINT}",
    f"/api/v1/alerts/{HUGE_ID}",
])
def test_ids_past_bigint_are_unknown(client: Any, admin: dict[str, str], path: str) -> None:
    response = client.get(path, headers=admin)
    assert response.status_code == 404, response.get_data(as_text=True)[:300]
    assert response.get_json()["error"]["code"] == "not_found"


def test_the_largest_id_is_an_ordinary_miss(client: Any, admin: dict[str, str]) -> None:
    assert client.get(f"/api/v1/employees/{LAST_BIGINT}", headers=admin).status_code == 404
    employee_id = new_employee(client, admin)
    response = client.get(f"/api/v1/employees/{employee_id}/transactions/{LAST_BIGINT}", headers=admin)
    assert response.status_code == 404
    response = client.post(f"/api/v1/apikeys/{HUGE_ID}/revoke", headers=admin)
    assert response.status_code == 404


@pytest.mark.parametrize("path", ["/api/v1/alerts", "/api/v1/audit", "/api/v1/employees/{id}/transactions"])
@pytest.mark.parametrize("value", ["²", "١٢", "1.5", "-1", "0x10", " 7", "1e3", HUGE_ID])
def test_limit_must_be_ascii_digits_in_range(client: Any, admin: dict[str, str], path: str, value: str) -> None:
    employee_id = new_employee(client, admin)
    response = client.get(path.format(id=employee_id), query_string={"limit": value}, headers=admin)
    error = invalid(response, "limit")
    assert "whole number between 1 and" in error["fields"]["limit"]


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "0001-01-01T00:30:00+00:45",
                                   "9999-12-31T23:59:59-05:00", "9999-12-31T20:00:00-23:59"])
@pytest.mark.parametrize("name", ["from", "to"])
def test_times_that_leave_the_calendar_in_utc(client: Any, admin: dict[str, str], value: str, name: str) -> None:
    employee_id = new_employee(client, admin)
    for path in ("/api/v1/audit", f"/api/v1/employees/{employee_id}/transactions"):
        error = invalid(client.get(path, query_string={name: value}, headers=admin), name)
        assert "years 1 to 9999" in error["fields"][name]


def test_the_calendar_edges_themselves_are_fine(client: Any, admin: dict[str, str]) -> None:
    employee_id = new_employee(client, admin)
    for path in ("/api/v1/audit", f"/api/v1/employees/{employee_id}/transactions"):
        response = client.get(path, query_string={"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"},
                              headers=admin)
        assert response.status_code == 200, response.get_json()
    response = client.post("/api/v1/apikeys", json={"username": "alice", "name": "far", "role": "Admin",
                                                   "expires_at": "9999-12-31T23:00:00-05:00"}, headers=admin)
    invalid(response, "expires_at")


@pytest.mark.parametrize("body", ["[" * 100_000, '{"name":' * 100_000, "[" * 100_000 + "]" * 100_000])
def test_deeply_nested_json(client: Any, ta: Any, admin: dict[str, str], body: str) -> None:
    before = count(ta, Employee)
    response = client.post("/api/v1/employees", data=body, content_type="application/json", headers=admin)
    error = invalid(response, "body")
    assert "not valid JSON" in error["fields"]["body"]
    assert count(ta, Employee) == before


@pytest.mark.parametrize("body", ["[1]", '"x"', "[]", "1", "null", "true"])
def test_a_json_value_that_is_not_an_object(client: Any, ta: Any, admin: dict[str, str], body: str) -> None:
    employee_id = new_employee(client, admin)
    key = client.post("/api/v1/apikeys", json={"username": "alice", "name": "key", "role": "Admin"},
                      headers=admin).get_json()
    before = (count(ta, Employee), count(ta, OnboardingToken))
    for method, path in [("POST", "/api/v1/employees"), ("POST", f"/api/v1/apikeys/{key['id']}/rotate"),
                         ("POST", f"/api/v1/employees/{employee_id}/onboarding-links"),
                         ("PUT", "/api/v1/users/1/active"), ("POST", "/api/v1/auth/token")]:
        response = client.open(path, method=method, data=body, content_type="application/json", headers=admin)
        error = invalid(response, "body")
        assert error["fields"]["body"] == "must be a JSON object", (path, error)
    assert (count(ta, Employee), count(ta, OnboardingToken)) == before
    rotated = client.get("/api/v1/apikeys", headers=admin).get_json()["api_keys"][0]
    assert rotated["rotated_at"] is None


LONE_SURROGATES = ['"\\ud800"', '"\\udfff"', '"a\\ud83dz"', '"\\ude00\\ud83d"']


@pytest.mark.parametrize("text", LONE_SURROGATES)
def test_lone_surrogates_in_json_strings(client: Any, ta: Any, admin: dict[str, str], text: str) -> None:
    raw = '{"name": ' + text + ', "email": "x@example.com"}'
    response = client.post("/api/v1/employees", data=raw, content_type="application/json", headers=admin)
    error = invalid(response, "body")
    assert "surrogate" in error["fields"]["body"] or "hex escape" in error["fields"]["body"]
    assert count(ta, Employee) == 0


@pytest.mark.parametrize("text", LONE_SURROGATES)
def test_lone_surrogates_at_the_token_endpoint(client: Any, ta: Any, text: str) -> None:
    """No credentials needed to reach it: the anonymous sign-in must not fail with a 500 either."""
    for raw in ('{"username": ' + text + ', "password": "whatever-password"}',
                '{"username": "alice", "password": ' + text + "}"):
        response = client.post("/api/v1/auth/token", data=raw, content_type="application/json")
        invalid(response, "body")
    # A pair is a character like any other: an unknown user, not an error.
    pair = client.post("/api/v1/auth/token", data='{"username": "\\ud83d\\ude00", "password": "x"}',
                       content_type="application/json")
    assert pair.status_code == 401


@pytest.mark.parametrize("field", ["name", "email", "department", "external_id"])
def test_nul_in_body_strings(client: Any, ta: Any, admin: dict[str, str], field: str) -> None:
    body = {"name": "Ada", "email": "ada@example.com", field: "A\u0000B" if field != "email" else "a\u0000@b.com"}
    error = invalid(client.post("/api/v1/employees", json=body, headers=admin), field)
    assert "control characters" in error["fields"][field]
    assert count(ta, Employee) == 0


def test_nul_at_the_token_endpoint(client: Any, ta: Any) -> None:
    response = client.post("/api/v1/auth/token", json={"username": "ali\u0000ce", "password": "x"})
    invalid(response, "username")


@pytest.mark.parametrize(("path", "name"), [
    ("/api/v1/audit", "action"), ("/api/v1/audit", "resource_type"), ("/api/v1/alerts", "status"),
])
def test_nul_in_query_values(client: Any, admin: dict[str, str], path: str, name: str) -> None:
    response = client.get(f"{path}?{name}=x%00y", headers=admin)
    invalid(response, name)


def test_nul_in_a_csv_import(client: Any, ta: Any, admin: dict[str, str]) -> None:
    data = b"name,email\nAda\x00,ada@example.com\n"
    response = client.post("/api/v1/employees/import", data=data, content_type="text/csv", headers=admin)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert "line 2" in json.dumps(response.get_json())
    assert count(ta, Employee) == 0


def test_nothing_changes_when_a_key_body_is_refused(client: Any, ta: Any, admin: dict[str, str]) -> None:
    before = count(ta, ApiKey)
    response = client.post("/api/v1/apikeys", json={"username": "alice", "name": "ke\u0000y", "role": "Admin"},
                           headers=admin)
    invalid(response, "name")
    assert count(ta, ApiKey) == before
