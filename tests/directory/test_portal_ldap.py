"""Employee portal sign-in through the directory, against the real OpenLDAP server (slapd, tests/support/slapd.py).

The person binds with their own directory password over LDAPS; the appliance matches them to an employee by
e-mail (or employee number), opens an employee session (the __Host-vigatra-employee cookie, no dashboard
permission) and never a dashboard one. Every refusal reads the same to the person; the audit trail has why.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from typing import Any

import pytest
from sqlalchemy import select

from appliance.store.models import AuditEvent, EmployeeSession, User
from tests.portal.conftest import HttpsClient, csrf_from
from tests.support import slapd as seed
from tests.support.slapd import Slapd

EMPLOYEE_COOKIE = "__Host-vigatra-employee"


def _browser(dta: Any) -> Any:
    from appliance.app import create_app

    flask_app = create_app(dta.appliance)
    flask_app.test_client_class = HttpsClient
    return flask_app.test_client()


def _employee(dta: Any, email: str, *, number: str | None = None, offboard: bool = False) -> int:
    from appliance.services import employees

    with dta.store.unit_of_work() as session:
        employee = employees.create(session, name=email.partition("@")[0].title(), email=email, external_id=number)
        if offboard:
            employees.offboard(session, employee.id)
        return int(employee.id)


def _directory_sign_in(client: Any, username: str, password: str) -> Any:
    page = client.get("/me/sign-in")
    assert page.status_code == 200 and 'id="directory-sign-in"' in page.text, page.text[:1000]
    return client.post("/me/sign-in/directory", data={"csrf_token": csrf_from(page.text), "username": username,
                                                      "password": password})


def _sessions(dta: Any, employee_id: int) -> list[EmployeeSession]:
    with dta.store.read() as session:
        rows = list(session.execute(select(EmployeeSession).where(
            EmployeeSession.employee_id == employee_id)).scalars())
        for row in rows:
            session.expunge(row)
        return rows


def _sign_in_events(dta: Any) -> list[dict[str, Any]]:
    with dta.store.read() as session:
        rows = session.execute(select(AuditEvent.outcome, AuditEvent.status, AuditEvent.detail).where(
            AuditEvent.action == "portal.sign_in").order_by(AuditEvent.id)).all()
    return [{"outcome": o, "status": s, **json.loads(d or "{}")} for o, s, d in rows]


def _new_person(slapd: Slapd) -> tuple[str, str, str]:
    """A fresh directory account (the server is shared by the session's tests): uid, e-mail, password."""
    uid = "p" + secrets.token_hex(4)
    password = "directory-password-" + secrets.token_hex(4)
    slapd.add_person(uid, f"Pat {uid.title()}", f"{uid}@example.org", "N" + uid, password)
    return uid, f"{uid}@example.org", password


def test_the_sign_in_page_offers_the_directory_form(dta: Any) -> None:
    page = _browser(dta).get("/me/sign-in")
    assert page.status_code == 200
    assert 'action="/me/sign-in/directory"' in page.text and 'name="password"' in page.text
    assert 'id="portal-sso"' not in page.text  # no OpenID provider configured


def test_directory_password_opens_an_employee_session_and_no_dashboard_one(dta: Any, slapd: Slapd) -> None:
    employee_id = _employee(dta, "dan@example.org")
    client = _browser(dta)
    response = _directory_sign_in(client, "dan", slapd.passwords["dan"])
    assert response.status_code == 302 and response.headers["Location"].endswith("/me"), response.text[:500]
    assert client.get_cookie(EMPLOYEE_COOKIE) is not None
    home = client.get("/me")
    assert home.status_code == 200 and "Dan" in home.text
    (row,) = _sessions(dta, employee_id)
    assert row.link_id is None and row.ended_at is None
    # No dashboard account was created or used, and dashboard routes refuse the employee session.
    with dta.store.read() as session:
        assert session.execute(select(User).where(User.username == "dan")).scalar_one_or_none() is None
    assert client.get("/employees").status_code in (302, 403)
    assert client.get("/api/v1/employees").status_code in (401, 403)
    (event,) = _sign_in_events(dta)
    assert event["outcome"] == "success" and event["via"] == "ldap" and event["employee_id"] == employee_id


def test_wrong_password_unknown_person_and_no_employee_read_the_same(dta: Any, slapd: Slapd) -> None:
    _employee(dta, "vera@example.org")
    answers = []
    for name, password in (("vera", "not-veras-password"), ("nobody-here", "whatever-password"),
                           ("carl", slapd.passwords["carl"])):  # carl is in the directory but no employee
        response = _directory_sign_in(_browser(dta), name, password)
        assert response.status_code == 401
        assert response.headers.get("Set-Cookie", "").find(EMPLOYEE_COOKIE) < 0
        answers.append(response.text.split('role="alert"')[1][:300])
    assert len(set(answers)) == 1 and "Sign-in refused" in answers[0]
    reasons = [e["reason"] for e in _sign_in_events(dta)]
    assert [e["outcome"] for e in _sign_in_events(dta)] == ["denied"] * 3
    assert "wrong password" in reasons[0] and "no such account" in reasons[1]
    assert "no employee has the e-mail carl@example.org" in reasons[2]


def test_an_offboarded_employee_is_refused(dta: Any, slapd: Slapd) -> None:
    _employee(dta, "emma@example.org", offboard=True)
    response = _directory_sign_in(_browser(dta), "emma", slapd.passwords["emma"])
    assert response.status_code == 401 and "Sign-in refused" in response.text
    assert "offboarded" in _sign_in_events(dta)[-1]["reason"]


def test_a_disabled_directory_account_is_refused(dta: Any, slapd: Slapd) -> None:
    uid, email, password = _new_person(slapd)
    employee_id = _employee(dta, email)
    assert _directory_sign_in(_browser(dta), uid, password).status_code == 302
    slapd.lock(seed.person_dn(uid))
    response = _directory_sign_in(_browser(dta), uid, password)
    assert response.status_code == 401 and "Sign-in refused" in response.text
    assert "disabled" in _sign_in_events(dta)[-1]["reason"]
    assert len(_sessions(dta, employee_id)) == 1


def test_match_by_employee_number(dta: Any, slapd: Slapd) -> None:
    settings = dta.appliance.settings
    dta.appliance.settings = dataclasses.replace(settings, portal=dataclasses.replace(
        settings.portal, match_by="employee_number"))
    # The employee's e-mail differs from the directory's: only the number (employeeNumber) matches.
    employee_id = _employee(dta, "vera.private@example.com", number="E1003")
    assert _directory_sign_in(_browser(dta), "vera", slapd.passwords["vera"]).status_code == 302
    assert len(_sessions(dta, employee_id)) == 1
    _employee(dta, "dan@example.org")  # right e-mail, no number: refused under match_by employee_number
    assert _directory_sign_in(_browser(dta), "dan", slapd.passwords["dan"]).status_code == 401
    assert "no employee has the employee number E1004" in _sign_in_events(dta)[-1]["reason"]


def test_attempts_are_throttled_per_address(dta: Any, slapd: Slapd) -> None:
    settings = dta.appliance.settings
    dta.appliance.settings = dataclasses.replace(settings, portal=dataclasses.replace(
        settings.portal, link_requests_per_window=3))
    client = _browser(dta)
    statuses = [_directory_sign_in(client, "vera", "wrong-password-" + str(i)).status_code for i in range(4)]
    assert statuses == [401, 401, 401, 401]  # the fourth goes past the allowance of 3: the address is locked
    _employee(dta, "vera@example.org")
    throttled = _directory_sign_in(client, "vera", slapd.passwords["vera"])
    assert throttled.status_code == 429 and throttled.headers["Retry-After"]


def test_a_dashboard_user_who_is_an_employee_gets_two_separate_sessions(dta: Any, slapd: Slapd) -> None:
    """emma is an Admin through her directory groups and an employee: the dashboard sign-in gives her a dashboard
    session and no employee one; the portal sign-in an employee session and no dashboard permission."""
    employee_id = _employee(dta, "emma@example.org")
    dashboard = _browser(dta)
    page = dashboard.get("/login")
    signed = dashboard.post("/login", data={"csrf_token": csrf_from(page.text), "username": "emma",
                                            "password": slapd.passwords["emma"]})
    assert signed.status_code == 302, signed.text[:500]
    assert dashboard.get("/employees").status_code == 200
    assert dashboard.get("/me").status_code in (302, 401, 403)
    assert _sessions(dta, employee_id) == []
    employee = _browser(dta)
    assert _directory_sign_in(employee, "emma", slapd.passwords["emma"]).status_code == 302
    assert employee.get("/me").status_code == 200
    assert employee.get("/employees").status_code in (302, 403)
    assert dashboard.get("/employees").status_code == 200  # the other browser's dashboard session lives on


def test_turned_off_the_portal_offers_no_directory_sign_in(dta: Any, slapd: Slapd) -> None:
    settings = dta.appliance.settings
    dta.appliance.settings = dataclasses.replace(settings, portal=dataclasses.replace(
        settings.portal, directory_sign_in=False))
    client = _browser(dta)
    assert 'id="directory-sign-in"' not in client.get("/me/sign-in").text
    with client.session_transaction() as s:
        s["csrf"] = "x" * 43
    response = client.post("/me/sign-in/directory", data={"csrf_token": "x" * 43, "username": "dan",
                                                          "password": slapd.passwords["dan"]})
    assert response.status_code == 404


@pytest.mark.parametrize(("username", "password"), [("", "something"), ("dan", "")])
def test_an_empty_name_or_password_is_refused_before_the_directory(dta: Any, username: str, password: str) -> None:
    response = _directory_sign_in(_browser(dta), username, password)
    assert response.status_code == 400
