"""Signing in to the employee portal: one-time links (15 minutes, one use, one browser), printed by IT or
e-mailed through the relay, every step audited; sessions that end."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from appliance.store.models import AuditEvent, EmployeeSignInLink
from tests.onboarding.conftest import run_cli, write_config
from tests.portal.conftest import browser, csrf_from, csrf_of, new_employee, printed_link, sign_in, signed_in
from tests.support.app import build
from tests.support.smtp import MailServer, smtp_server


def events(ta: Any, prefix: str = "portal.") -> list[AuditEvent]:
    with ta.store.read() as session:
        rows = list(session.execute(select(AuditEvent).where(AuditEvent.action.like(f"{prefix}%"))
                                    .order_by(AuditEvent.id)).scalars())
        session.expunge_all()
    return rows


def test_portal_link_from_the_cli(ta: Any, tmp_path: Path, flask_app: Any) -> None:
    employee_id = new_employee(ta)
    config = write_config(ta, tmp_path / "vigatra.yaml", server={"public_url": "https://vigatra.example.com"})
    result = run_cli(config, "employee", "portal-link", "--employee", str(employee_id))
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("portal url: ")]
    url = line.removeprefix("portal url: ")
    assert url.startswith("https://vigatra.example.com/me/sign-in/")
    token = url.rsplit("/", 1)[1]
    client = browser(flask_app)
    response = sign_in(client, token)
    assert response.status_code == 302
    assert client.get("/me").status_code == 200
    (created,) = [e for e in events(ta) if e.action == "portal.link_create"]
    assert created.actor_type == "system" and json.loads(created.detail)["employee_id"] == employee_id
    assert [e.action for e in events(ta)][1:] == ["portal.link_open", "portal.sign_in", "portal.view"]
    for e in events(ta):
        assert token not in f"{e.detail} {e.path} {e.resource_id}"
    unknown = run_cli(config, "employee", "portal-link", "--employee", "987654")
    assert unknown.exit_code == 1


def test_the_link_uses_public_url_never_the_host_header(ta: Any, flask_app: Any, tmp_path: Path) -> None:
    employee_id = new_employee(ta)
    config = write_config(ta, tmp_path / "vigatra.yaml")
    result = run_cli(config, "employee", "portal-link", "--employee", str(employee_id))
    (line,) = [x for x in result.output.splitlines() if x.startswith("portal url: ")]
    assert line.startswith("portal url: https://") and "/me/sign-in/" in line
    assert "server.public_url" in result.output  # the note on stderr (mixed into output by CliRunner)


def test_a_link_works_once(ta: Any, flask_app: Any) -> None:
    employee_id = new_employee(ta)
    token = printed_link(ta, employee_id)
    client = browser(flask_app)
    assert sign_in(client, token).status_code == 302
    again = client.get(f"/me/sign-in/{token}")
    assert again.status_code == 404 and "invalid, expired or already used" in again.text
    refused = [e for e in events(ta) if e.action == "portal.link_refused"]
    assert json.loads(refused[-1].detail)["state"] == "used"


def test_a_link_expires_after_15_minutes(ta: Any, flask_app: Any) -> None:
    employee_id = new_employee(ta)
    token = printed_link(ta, employee_id)
    with ta.store.read() as session:
        row = session.execute(select(EmployeeSignInLink)).scalar_one()
        assert dt.timedelta(minutes=14) < row.expires_at - row.created_at <= dt.timedelta(minutes=15)
    with ta.store.unit_of_work() as session:
        session.execute(update(EmployeeSignInLink).values(
            expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    assert browser(flask_app).get(f"/me/sign-in/{token}").status_code == 404


def test_a_link_is_bound_to_the_browser_that_opened_it(ta: Any, flask_app: Any) -> None:
    employee_id = new_employee(ta)
    token = printed_link(ta, employee_id)
    first, second = browser(flask_app), browser(flask_app)
    page = first.get(f"/me/sign-in/{token}")
    assert page.status_code == 200
    other = second.get(f"/me/sign-in/{token}")
    assert other.status_code == 409 and "another browser" in other.text
    stolen = second.post(f"/me/sign-in/{token}", data={"csrf_token": csrf_of(second)})
    assert stolen.status_code == 409
    assert second.get("/me").status_code == 302  # not signed in
    assert first.post(f"/me/sign-in/{token}", data={"csrf_token": csrf_from(page.text)}).status_code == 302


def test_sign_in_without_the_csrf_token_is_refused(ta: Any, flask_app: Any) -> None:
    token = printed_link(ta, new_employee(ta))
    client = browser(flask_app)
    client.get(f"/me/sign-in/{token}")
    assert client.post(f"/me/sign-in/{token}", data={}).status_code == 403
    assert client.get("/me").status_code == 302


def test_sign_out_ends_the_session_server_side(ta: Any, flask_app: Any) -> None:
    employee_id = new_employee(ta)
    client = signed_in(flask_app, ta, employee_id)
    cookie = client.get_cookie("__Host-vigatra-employee")
    assert cookie is not None
    page = client.get("/me")
    assert client.post("/me/sign-out", data={"csrf_token": csrf_from(page.text)}).status_code == 302
    replay = browser(flask_app)
    replay.set_cookie("__Host-vigatra-employee", cookie.value, domain="localhost", secure=True)
    assert replay.get("/api/v1/me").status_code == 401


def test_offboarding_ends_the_session(ta: Any, flask_app: Any) -> None:
    from appliance.services import employees

    employee_id = new_employee(ta)
    client = signed_in(flask_app, ta, employee_id)
    assert client.get("/api/v1/me").status_code == 200
    with ta.store.unit_of_work() as session:
        employees.offboard(session, employee_id)
    assert client.get("/api/v1/me").status_code == 401


def test_a_state_change_needs_the_csrf_token(ta: Any, flask_app: Any) -> None:
    client = signed_in(flask_app, ta, new_employee(ta))
    assert client.post("/me/sign-out", data={}).status_code == 403


def test_the_portal_states_what_the_firm_sees(ta: Any, flask_app: Any) -> None:
    client = signed_in(flask_app, ta, new_employee(ta))
    page = client.get("/me")
    assert "What the firm can see about you" in page.text
    assert page.headers["Cache-Control"] == "no-store"
    body = client.get("/api/v1/me").get_json()
    assert body["name"] == "Erin" and len(body["what_the_firm_can_see"]) >= 4


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[MailServer]:
    with smtp_server(tmp_path / "smtp", tls=False) as server:
        yield server


def test_a_link_asked_for_by_mail_arrives_and_works_only_in_the_asking_browser(
        db_url: str, tmp_path: Path, relay: MailServer) -> None:
    from appliance.app import create_app

    ta = build(db_url, tmp_path / "data", server={"public_url": "https://vigatra.example.com"},
               notifications={"smtp": {"host": relay.host, "port": relay.port, "starttls": False,
                                       "sender": "vigatra@example.com"}})
    try:
        flask_app = create_app(ta.appliance)
        employee_id = new_employee(ta)
        from appliance.services import employees

        with ta.store.read() as session:
            email = employees.get(session, employee_id).email
        asking, other = browser(flask_app), browser(flask_app)
        form = asking.get("/me/sign-in")
        sent = asking.post("/me/sign-in", data={"csrf_token": csrf_from(form.text), "email": email.upper()})
        assert sent.status_code == 200 and "on its way" in sent.text
        unknown = other.post("/me/sign-in", data={"csrf_token": csrf_from(other.get("/me/sign-in").text),
                                                  "email": "nobody@example.com"})
        assert unknown.status_code == 200 and "on its way" in unknown.text  # the same answer
        report = ta.appliance.mailer.deliver_pending()
        assert len(report.sent) == 1
        (mail,) = relay.messages()
        assert mail.recipients == [email]
        url = next(w for w in mail.message.get_content().split() if "/me/sign-in/" in w)
        assert url.startswith("https://vigatra.example.com/me/sign-in/")
        token = url.rsplit("/", 1)[1]
        assert other.get(f"/me/sign-in/{token}").status_code == 409
        assert sign_in(asking, token).status_code == 302
        assert asking.get("/me").status_code == 200
        outcomes = [(e.action, e.outcome) for e in events(ta) if e.action == "portal.link_request"]
        assert outcomes == [("portal.link_request", "success"), ("portal.link_request", "failure")]
    finally:
        ta.appliance.close()
        os.environ.pop("VIGATRA_SECRET_SMTP_PASSWORD", None)
