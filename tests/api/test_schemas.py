"""Every input validated by a schema (issue 17, item 3): unknown fields, wrong types (no coercion),
out-of-range values and oversized strings are refused with 400 {"error": {"code": "invalid_request",
"message", "fields"}} naming each bad field, and nothing changes. API bodies and query strings, and
the UI's forms."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from appliance.boundary.routes import EMPLOYEE, public, route_table
from appliance.boundary.validation import UnvalidatedRoute, accepts, check_validated, schema_of
from appliance.store.models import ApiKey, AuditEvent, Employee, Role, User
from tests.access.helpers import auth, csrf_of, login_session, token
from tests.support.routes import calls

TABLES = (Employee, User, Role, ApiKey)


@pytest.fixture
def admin(client: Any, ta: Any) -> dict[str, str]:
    return auth(token(client, ta, "alice"))


def counts(ta: Any) -> list[int]:
    with ta.store.read() as session:
        return [int(session.execute(select(func.count()).select_from(m)).scalar_one()) for m in TABLES]


def refused(response: Any, *fields: str) -> dict[str, str]:
    assert response.status_code == 400, (response.status_code, response.get_data(as_text=True)[:400])
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request"
    assert set(fields) <= set(error["fields"]), error
    for field in fields:
        assert field in error["message"], error
    return dict(error["fields"])


def test_the_issue_example_is_refused_and_nothing_is_stored(client: Any, ta: Any, admin: dict[str, str]) -> None:
    before = counts(ta)
    response = client.post("/api/v1/employees", json={"name": {"first": "A"}, "bogus": 1}, headers=admin)
    fields = refused(response, "name", "bogus", "email")
    assert fields == {"name": "must be a string", "bogus": "is not a known field", "email": "is required"}
    assert counts(ta) == before


def test_every_json_body_refuses_an_unknown_field(client: Any, ta: Any, flask_app: Any,
                                                  admin: dict[str, str]) -> None:
    tried = 0
    before = counts(ta)
    for call in calls(flask_app):
        spec = schema_of(flask_app.view_functions[call.row.endpoint])
        if spec is None or spec.body is None or call.row.permission == EMPLOYEE:
            continue  # (the employee portal's take an employee session: tests/portal/test_separation.py)
        response = client.open(call.path, method=call.method, json={"zz_not_a_field": 1}, headers=admin)
        assert refused(response, "zz_not_a_field")["zz_not_a_field"] == "is not a known field", call
        tried += 1
    assert tried >= 15
    assert counts(ta) == before


def test_every_api_route_refuses_an_unknown_query_parameter(client: Any, flask_app: Any,
                                                           admin: dict[str, str]) -> None:
    tried = 0
    for call in calls(flask_app):
        if not call.path.startswith("/api/v1/") or call.row.permission == EMPLOYEE:
            continue
        response = client.open(call.path, method=call.method, query_string={"zz_not_a_parameter": "1"},
                               json={} if call.method != "GET" else None, headers=admin)
        refused(response, "zz_not_a_parameter")
        tried += 1
    assert tried >= 30


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("PUT", "/api/v1/users/{nora}/active", {"active": "true"}, "active"),
    ("PUT", "/api/v1/users/{nora}/active", {"active": 1}, "active"),
    ("PUT", "/api/v1/users/{nora}/roles", {"roles": "Viewer"}, "roles"),
    ("PUT", "/api/v1/users/{nora}/roles", {"roles": [1]}, "roles.0"),
    ("POST", "/api/v1/employees", {"name": "Ada", "email": "a@example.com", "external_id": 123}, "external_id"),
    ("POST", "/api/v1/employees", {"name": ["Ada"], "email": "a@example.com"}, "name"),
    ("POST", "/api/v1/roles", {"name": "R", "permissions": [{"p": "employees:read"}]}, "permissions.0"),
    ("POST", "/api/v1/users", {"username": "dora", "password": 12345678901234567, "roles": []}, "password"),
    ("POST", "/api/v1/apikeys/{key}/rotate", {"overlap_hours": 1.0}, "overlap_hours"),
    ("POST", "/api/v1/apikeys/{key}/rotate", {"overlap_hours": True}, "overlap_hours"),
    ("POST", "/api/v1/apikeys/{key}/rotate", {"overlap_hours": "2"}, "overlap_hours"),
    ("POST", "/api/v1/auth/token", {"username": "alice", "password": None}, "password"),
])
def test_wrong_types_are_not_coerced(client: Any, ta: Any, admin: dict[str, str], method: str, path: str,
                                     body: dict[str, Any], field: str) -> None:
    key = client.post("/api/v1/apikeys", json={"username": "alice", "name": "rotating", "role": "Admin"},
                      headers=admin).get_json()["id"]
    url = path.format(nora=ta.personas["nora"].user_id, key=key)
    before = counts(ta)
    refused(client.open(url, method=method, json=body, headers=admin), field)
    assert counts(ta) == before


@pytest.mark.parametrize(("method", "path", "body", "field", "words"), [
    ("POST", "/api/v1/employees", {"name": "x" * 201, "email": "a@example.com"}, "name", "at most 200 characters"),
    ("POST", "/api/v1/employees", {"name": "Ada", "email": "a@example.com", "department": "d" * 201}, "department",
     "at most 200"),
    ("POST", "/api/v1/roles", {"name": "Readers", "description": "d" * 501}, "description", "at most 500"),
    ("POST", "/api/v1/users", {"username": "u" * 65, "password": "p" * 20}, "username", "at most 64"),
    ("POST", "/api/v1/users", {"username": "dora", "password": "p" * 20, "roles": ["Viewer"] * 21}, "roles",
     "at most 20 items"),
    ("POST", "/api/v1/apikeys/{key}/rotate", {"overlap_hours": 169}, "overlap_hours", "between 0 and 168"),
    ("POST", "/api/v1/apikeys/{key}/rotate", {"overlap_hours": -1}, "overlap_hours", "between 0 and 168"),
    ("POST", "/api/v1/alerts/1/triage", {"status": "resolved", "resolution": "r" * 5001}, "resolution", "5000"),
    ("POST", "/api/v1/alerts/1/triage", {"status": "open"}, "status", "one of"),
    ("POST", "/api/v1/employees/{employee}/onboarding-links", {"purpose": "admin"}, "purpose", "one of"),
])
def test_oversized_and_out_of_range_values(client: Any, ta: Any, admin: dict[str, str], method: str, path: str,
                                           body: dict[str, Any], field: str, words: str) -> None:
    key = client.post("/api/v1/apikeys", json={"username": "alice", "name": "rotating", "role": "Admin"},
                      headers=admin).get_json()["id"]
    employee = client.post("/api/v1/employees", json={"name": "Ada", "email": "ada@example.com"},
                           headers=admin).get_json()["id"]
    before = counts(ta)
    fields = refused(client.open(path.format(key=key, employee=employee), method=method, json=body, headers=admin),
                     field)
    assert words in fields[field]
    assert counts(ta) == before


@pytest.mark.parametrize(("path", "query", "field"), [
    ("/api/v1/alerts", {"limit": "0"}, "limit"), ("/api/v1/alerts", {"limit": "1001"}, "limit"),
    ("/api/v1/alerts", {"status": "closed"}, "status"), ("/api/v1/audit", {"format": "xml"}, "format"),
    ("/api/v1/audit", {"limit": ""}, "limit"), ("/api/v1/audit", {"from": "yesterday"}, "from"),
    ("/api/v1/audit", {"action": "a" * 65}, "action"), ("/api/v1/audit", {"user_id": "0"}, "user_id"),
])
def test_query_parameters_are_checked(client: Any, admin: dict[str, str], path: str, query: dict[str, str],
                                      field: str) -> None:
    refused(client.get(path, query_string=query, headers=admin), field)


def test_a_repeated_parameter_is_refused(client: Any, admin: dict[str, str]) -> None:
    fields = refused(client.get("/api/v1/alerts?limit=5&limit=6", headers=admin), "limit")
    assert fields["limit"] == "is given more than once"


def test_every_field_is_named_at_once(client: Any, admin: dict[str, str]) -> None:
    response = client.post("/api/v1/users", json={"username": 7, "password": None, "roles": "x", "extra": 1},
                           headers=admin)
    fields = refused(response, "username", "password", "roles", "extra")
    assert len(fields) == 4


def test_a_refused_request_is_still_audited(client: Any, ta: Any, admin: dict[str, str]) -> None:
    client.post("/api/v1/employees", json={"bogus": 1}, headers=admin)
    with ta.store.read() as session:
        event = session.execute(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).scalar_one()
        assert (event.action, event.status, event.outcome) == ("employees.create", 400, "failure")


# -- the UI's forms -------------------------------------------------------------------------------------

def test_every_form_refuses_an_unknown_field(client: Any, ta: Any, flask_app: Any) -> None:
    login_session(client, ta, "alice")
    csrf = csrf_of(client)
    before = counts(ta)
    tried = 0
    for call in calls(flask_app):
        spec = schema_of(flask_app.view_functions[call.row.endpoint])
        if spec is None or spec.form is None or call.method != "POST":
            continue
        if call.row.endpoint in ("web.onboard", "web.logout"):
            continue  # the onboarding page needs a live link (tests/onboarding); logout would end the session
        if call.row.endpoint in ("web.login_oidc_code", "web.portal_sign_in_directory"):
            continue  # exist only with the directory configured (tests/directory: the TOTP step, the portal's bind)
        if call.row.permission == EMPLOYEE:
            continue  # the employee portal's forms take an employee session (tests/portal/test_separation.py)
        response = client.post(call.path, data={"csrf_token": csrf, "zz_not_a_field": "1"})
        assert response.status_code == 400, (call.path, response.status_code)
        assert "zz_not_a_field" in response.get_data(as_text=True), call.path
        tried += 1
    assert tried >= 15
    assert counts(ta) == before


@pytest.mark.parametrize(("path", "data", "field"), [
    ("/employees", {"name": "Ada\x00", "email": "ada@example.com"}, "name"),
    ("/admin/roles", {"name": "Readers", "perm": ["employees:read"], "scope_balances": "some"}, "scope_balances"),
    ("/admin/apikeys", {"name": "k1", "username": "alice", "expires_days": "²"}, "expires_days"),
    ("/admin/users", {"username": "dora", "password": "p" * 300}, "password"),
    ("/admin/users/1/active", {"active": "yes"}, "active"),
])
def test_form_values_are_checked(client: Any, ta: Any, path: str, data: dict[str, Any], field: str) -> None:
    login_session(client, ta, "alice")
    before = counts(ta)
    response = client.post(path, data={**data, "csrf_token": csrf_of(client)})
    assert response.status_code == 400, (response.status_code, response.get_data(as_text=True)[:300])
    assert field in response.get_data(as_text=True)
    assert counts(ta) == before


def test_a_malformed_sign_in_is_answered_on_the_sign_in_page(client: Any, ta: Any) -> None:
    client.get("/login")
    response = client.post("/login", data={"username": "alice\x00", "password": "x", "csrf_token": csrf_of(client)})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'name="password"' in page and "control characters" in page


def test_a_page_refuses_an_unknown_query_parameter_but_filters_may_be_blank(client: Any, ta: Any) -> None:
    login_session(client, ta, "alice")
    assert client.get("/employees?tab=2").status_code == 400
    assert client.get("/audit?from=&to=&user_id=&resource_type=&action=").status_code == 200
    assert client.get("/audit?from=not-a-time").status_code == 400


# -- the start-up check -----------------------------------------------------------------------------

def test_a_route_without_a_declared_schema_stops_start_up() -> None:
    app = Flask(__name__)

    @public()
    @accepts()
    def declared() -> str:
        return "ok"

    @public()
    def undeclared() -> str:
        return "ok"

    app.add_url_rule("/declared", "declared", declared)
    check_validated(app)
    app.add_url_rule("/undeclared", "undeclared", undeclared)
    with pytest.raises(UnvalidatedRoute, match="/undeclared"):
        check_validated(app)


def test_the_appliance_declares_every_route(flask_app: Any) -> None:
    rows = route_table(flask_app)
    assert all(schema_of(flask_app.view_functions[r.endpoint]) is not None for r in rows if r.endpoint != "static")
