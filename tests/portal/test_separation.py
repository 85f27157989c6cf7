"""Employee sessions and dashboard credentials never cross, generated over the whole route table: every
employee-portal route refuses dashboard credentials (JWT, API key, session) and answers the employee only
about themselves; every other guarded route refuses an employee session. Each call is audited once."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select

from appliance.boundary.routes import EMPLOYEE, PUBLIC, route_table
from appliance.store.models import AuditEvent
from tests.access.helpers import api_key, auth, login_session, token
from tests.portal.conftest import browser, csrf_of, signed_in
from tests.support.routes import calls

# The view argument of each portal route with an id, and the kind of record it names.
RECORD_OF_ARG = {"transaction_id": "transaction", "request_id": "request", "task_id": "task",
                 "version_id": "code_version"}


def audit_count(ta: Any) -> int:
    with ta.store.read() as session:
        return int(session.execute(select(func.count()).select_from(AuditEvent)).scalar_one())


def portal_routes(flask_app: Any) -> list[Any]:
    rows = [row for row in route_table(flask_app) if row.permission == EMPLOYEE]
    assert {r.rule for r in rows} >= {"/api/v1/me", "/api/v1/me/transactions", "/api/v1/me/preclearances", "/me"}
    return rows


def test_every_api_me_route_is_an_employee_route(flask_app: Any) -> None:
    for row in route_table(flask_app):
        portal_path = row.rule in ("/me", "/api/v1/me") or row.rule.startswith(("/me/", "/api/v1/me/"))
        if portal_path and not row.rule.startswith("/me/sign-in"):
            assert row.permission == EMPLOYEE, row.rule


def test_dashboard_credentials_are_refused_on_every_portal_route(client: Any, ta: Any, flask_app: Any,
                                                                 two: dict[str, Any]) -> None:
    jwt = auth(token(client, ta, "alice"))
    key = {"X-API-Key": api_key(client, ta)}
    dashboard = browser(flask_app)
    login_session(dashboard, ta, "alice")
    problems = []
    for call in calls(flask_app):
        if call.row.permission != EMPLOYEE:
            continue
        for label, c, headers in (("jwt", client, jwt), ("apikey", client, key), ("session", dashboard, {})):
            if label == "session" and call.method != "GET":
                headers = {"X-CSRF-Token": csrf_of(dashboard)}
            before = audit_count(ta)
            response = c.open(call.path, method=call.method, headers=headers,
                              json={} if call.method != "GET" else None)
            # The API never reads the dashboard's browser session: there it is no credential at all (401).
            want = 401 if label == "session" and call.path.startswith("/api/") else 403
            if response.status_code != want:
                problems.append(f"{label} {call.method} {call.path}: {response.status_code}, want {want}")
            if audit_count(ta) - before != int(want == 403):
                problems.append(f"{label} {call.method} {call.path}: audited {audit_count(ta) - before} times")
        anonymous = browser(flask_app).open(call.path, method=call.method)
        if anonymous.status_code not in (401, 302, 403):
            problems.append(f"anonymous {call.method} {call.path}: {anonymous.status_code}")
    assert not problems, "\n".join(problems)


def test_an_employee_session_is_refused_on_every_dashboard_route(ta: Any, flask_app: Any, two: dict[str, Any]
                                                                  ) -> None:
    employee = signed_in(flask_app, ta, two["erin"])
    problems = []
    for call in calls(flask_app):
        if call.row.permission in (EMPLOYEE, PUBLIC) or call.row.endpoint == "static":
            continue
        headers = {"X-CSRF-Token": csrf_of(employee)} if call.method != "GET" else {}
        before = audit_count(ta)
        response = employee.open(call.path, method=call.method, headers=headers,
                                 json={} if call.method != "GET" else None)
        if response.status_code != 403:
            problems.append(f"{call.method} {call.path}: {response.status_code}, want 403")
        if audit_count(ta) - before != 1:
            problems.append(f"{call.method} {call.path}: not audited exactly once")
    assert not problems, "\n".join(problems)
    with ta.store.read() as session:
        last = session.execute(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).scalar_one()
        assert last.actor_type == "employee" and last.outcome == "denied" and last.user_id is None
        assert json.loads(last.detail)["employee_id"] == two["erin"]


def test_an_employee_reads_only_their_own_records_on_every_portal_route(ta: Any, flask_app: Any,
                                                                        two: dict[str, Any]) -> None:
    """Erin's session, Frank's ids: every route with an id answers 404; every list shows Erin's only."""
    erin = signed_in(flask_app, ta, two["erin"])
    problems = []
    for row in portal_routes(flask_app):
        if "GET" not in row.methods:
            continue
        args = [a for a in RECORD_OF_ARG if f"<int:{a}>" in row.rule]
        if args:
            for whose, expected in (("frank_records", 404), ("erin_records", 200)):
                path = row.rule
                for arg in args:
                    path = path.replace(f"<int:{arg}>", str(two[whose][RECORD_OF_ARG[arg]]))
                response = erin.get(path)
                if response.status_code != expected:
                    problems.append(f"GET {path} ({whose}): {response.status_code}, want {expected}")
            continue
        assert "<" not in row.rule, f"a portal route with an unknown argument: {row.rule}"
        response = erin.get(row.rule)
        if response.status_code != 200:
            problems.append(f"GET {row.rule}: {response.status_code}")
        if "FRANKCOIN" in response.text or "Frank" in response.text:
            problems.append(f"GET {row.rule}: shows Frank's records")
    assert not problems, "\n".join(problems)
    mine = erin.get("/api/v1/me/transactions").get_json()["transactions"]
    assert [t["asset"] for t in mine] == ["ERINCOIN"]
    assert erin.get("/api/v1/me/holdings").get_json()["holdings"][0]["asset"] == "ERINCOIN"
    assert [r["asset"] for r in erin.get("/api/v1/me/preclearances").get_json()["preclearances"]] == ["ERINCOIN"]


def test_every_portal_form_refuses_an_unknown_field(ta: Any, flask_app: Any, two: dict[str, Any]) -> None:
    from appliance.boundary.validation import schema_of

    erin = signed_in(flask_app, ta, two["erin"])
    tried = 0
    for call in calls(flask_app):
        spec = schema_of(flask_app.view_functions[call.row.endpoint])
        if call.row.permission != EMPLOYEE or spec is None or spec.form is None or call.method != "POST":
            continue
        if call.row.endpoint == "web.portal_sign_out":
            continue  # would end the session under test
        before = audit_count(ta)
        response = erin.post(call.path, data={"csrf_token": csrf_of(erin), "zz_not_a_field": "1"})
        assert response.status_code == 400, (call.path, response.status_code)
        assert "zz_not_a_field" in response.get_data(as_text=True), call.path
        assert audit_count(ta) - before == 1
        tried += 1
    assert tried >= 2


def test_every_portal_api_route_refuses_unknown_input(ta: Any, flask_app: Any, two: dict[str, Any]) -> None:
    erin = signed_in(flask_app, ta, two["erin"])
    headers = {"X-CSRF-Token": csrf_of(erin)}
    tried = 0
    for call in calls(flask_app):
        if call.row.permission != EMPLOYEE or not call.path.startswith("/api/v1/"):
            continue
        response = erin.open(call.path, method=call.method, query_string={"zz_not_a_parameter": "1"},
                             json={} if call.method != "GET" else None, headers=headers)
        assert response.status_code == 400 and "zz_not_a_parameter" in response.get_data(as_text=True), call.path
        if call.method == "POST":
            response = erin.open(call.path, method="POST", json={"zz_not_a_field": 1}, headers=headers)
            assert response.status_code == 400 and "zz_not_a_field" in response.get_data(as_text=True), call.path
        tried += 1
    assert tried >= 9
