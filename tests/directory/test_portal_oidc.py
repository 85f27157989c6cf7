"""Employee portal sign-in through the OpenID provider (the real oidc-provider on loopback, tests/support/oidc.py):
the portal's button runs the dashboard's code flow with PKCE, nonce and state, and the shared callback opens an
employee session — never a dashboard account or session; a dashboard flow never opens an employee session.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from appliance.store.models import AuditEvent, EmployeeSession
from tests.directory.conftest import SECRET_NAME, oidc_overrides
from tests.directory.test_oidc import _user, log_in_at_provider
from tests.directory.test_oidc import sign_in as dashboard_sign_in
from tests.support import oidc as op
from tests.support.app import TestAppliance, build

EMPLOYEE_COOKIE = "__Host-vigatra-employee"


def _employee(ta: TestAppliance, email: str, *, offboard: bool = False) -> int:
    from appliance.services import employees

    with ta.store.unit_of_work() as session:
        employee = employees.create(session, name=email.partition("@")[0].title(), email=email)
        if offboard:
            employees.offboard(session, employee.id)
        return int(employee.id)


def _sessions(ta: TestAppliance, employee_id: int) -> int:
    with ta.store.read() as session:
        return len(list(session.execute(select(EmployeeSession.id).where(
            EmployeeSession.employee_id == employee_id)).scalars()))


def _portal_sign_in(oclient: Any, issuer: str, login: str) -> Any:
    page = oclient.get("/me/sign-in")
    assert page.status_code == 200 and 'id="portal-sso"' in page.text, page.text[:800]
    started = oclient.get("/me/sign-in/sso")
    assert started.status_code == 302, started.text[:300]
    query = parse_qs(urlsplit(started.headers["Location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"][0] and query["state"][0]
    back = log_in_at_provider(started.headers["Location"], issuer, login)
    assert back.startswith("https://localhost/login/oidc/callback?"), back
    return oclient.get(back.removeprefix("https://localhost"))


def test_the_portal_button_opens_an_employee_session_and_no_dashboard_account(
        ota_oidc: TestAppliance, oclient: Any, provider: op.OpenIdProvider) -> None:
    employee_id = _employee(ota_oidc, "olga@example.org")
    done = _portal_sign_in(oclient, provider.issuer, "olga")
    assert done.status_code == 302 and urlsplit(done.headers["Location"]).path == "/me", done.text[:300]
    assert oclient.get_cookie(EMPLOYEE_COOKIE) is not None
    assert oclient.get("/me").status_code == 200
    assert _sessions(ota_oidc, employee_id) == 1
    assert _user(ota_oidc, "olga") is None  # olga's groups map to Compliance, yet no dashboard account was made
    assert oclient.get("/employees").status_code in (302, 403)
    assert oclient.get("/api/v1/employees").status_code in (401, 403)
    with ota_oidc.store.read() as session:
        detail = session.execute(select(AuditEvent.detail).where(
            AuditEvent.action == "portal.sign_in", AuditEvent.outcome == "success")).scalar_one()
    assert '"via": "oidc"' in detail and f"{provider.issuer}|olga" in detail


def test_no_employee_and_an_offboarded_one_are_refused_alike(
        ota_oidc: TestAppliance, oclient: Any, provider: op.OpenIdProvider) -> None:
    _employee(ota_oidc, "ian@example.org", offboard=True)
    nobody = _portal_sign_in(oclient, provider.issuer, "nils")
    offboarded = _portal_sign_in(oclient, provider.issuer, "ian")
    assert nobody.status_code == offboarded.status_code == 401
    assert nobody.text == offboarded.text and "Sign-in refused" in nobody.text
    assert oclient.get_cookie(EMPLOYEE_COOKIE) is None
    with ota_oidc.store.read() as session:
        reasons = list(session.execute(select(AuditEvent.detail).where(
            AuditEvent.action == "portal.sign_in").order_by(AuditEvent.id)).scalars())
    assert "no employee has the e-mail nils@example.org" in reasons[0] and "offboarded" in reasons[1]


def test_match_by_the_employee_number_claim(ota_oidc: TestAppliance, oclient: Any,
                                           provider: op.OpenIdProvider) -> None:
    from appliance.services import employees

    settings = ota_oidc.appliance.settings
    ota_oidc.appliance.settings = dataclasses.replace(settings, portal=dataclasses.replace(
        settings.portal, match_by="employee_number"))
    with ota_oidc.store.unit_of_work() as session:  # another address: only the number (claim employee_number) matches
        employee_id = int(employees.create(session, name="Olga", email="olga.home@example.com",
                                           external_id="E2001").id)
    done = _portal_sign_in(oclient, provider.issuer, "olga")
    assert done.status_code == 302 and urlsplit(done.headers["Location"]).path == "/me", done.text[:300]
    assert _sessions(ota_oidc, employee_id) == 1
    refused = _portal_sign_in(oclient, provider.issuer, "ian")  # ian's token has no employee_number claim
    assert refused.status_code == 401


def test_a_dashboard_flow_never_opens_an_employee_session(
        ota_oidc: TestAppliance, oclient: Any, provider: op.OpenIdProvider) -> None:
    employee_id = _employee(ota_oidc, "olga@example.org")
    done = dashboard_sign_in(oclient, provider.issuer, "olga")
    assert done.status_code == 302 and urlsplit(done.headers["Location"]).path == "/"
    assert _sessions(ota_oidc, employee_id) == 0 and oclient.get_cookie(EMPLOYEE_COOKIE) is None
    assert oclient.get("/me").status_code in (302, 401, 403)


def test_a_portal_state_is_used_once(ota_oidc: TestAppliance, oclient: Any, provider: op.OpenIdProvider) -> None:
    _employee(ota_oidc, "olga@example.org")
    started = oclient.get("/me/sign-in/sso")
    back = log_in_at_provider(started.headers["Location"], provider.issuer, "olga")
    code = parse_qs(urlsplit(back).query)["code"][0]
    assert oclient.get(f"/login/oidc/callback?code={code}&state=forged").status_code == 400
    assert oclient.get(back.removeprefix("https://localhost")).status_code == 400
    assert oclient.get_cookie(EMPLOYEE_COOKIE) is None


def test_the_portal_sign_in_in_chromium(db_url: str, tmp_path: Path) -> None:
    """An employee presses the portal's button, signs in at the provider's page, and lands on /me."""
    from appliance.app import create_app
    from tests.onboarding.conftest import spki_args
    from tests.support.live import browser_page, find_chromium, start_live
    from tests.support.tls import find_nginx, start_nginx

    if find_chromium() is None or find_nginx() is None:
        pytest.fail("Chromium and nginx are needed: `make test` installs them", pytrace=False)
    os.environ["VIGATRA_SECRET_" + SECRET_NAME.upper().replace("-", "_")] = op.CLIENT_SECRET
    ta = build(db_url, tmp_path / "data", **oidc_overrides("http://127.0.0.1:1"))
    employee_id = _employee(ta, "olga@example.org")
    live = start_live(create_app(ta.appliance))
    front = start_nginx(tmp_path / "nginx", live.url)
    running = op.start_provider([front.url + "/login/oidc/callback"], tmp_path)
    try:
        settings = ta.appliance.settings
        ta.appliance.settings = dataclasses.replace(
            settings, server=dataclasses.replace(settings.server, public_url=front.url),
            directory=dataclasses.replace(settings.directory, oidc=dataclasses.replace(
                settings.directory.oidc, issuer=running.issuer)))
        with browser_page(args=spki_args(front)) as page:
            page.goto(front.url + "/me/sign-in")
            page.click("#portal-sso")
            page.wait_for_url(re.compile(re.escape(running.issuer) + "/interaction/.*"))
            page.fill("input[name=login]", "olga")
            page.fill("input[name=password]", "any password at the test provider")
            page.click("button[type=submit]")
            page.wait_for_selector("button:has-text('Continue')")
            page.click("button:has-text('Continue')")
            page.wait_for_url(front.url + "/me", timeout=20_000)
            assert "Olga" in page.content()
            page.goto(front.url + "/employees")
            assert "Olga" not in page.content() or "/login" in page.url
        assert _sessions(ta, employee_id) == 1 and _user(ta, "olga") is None
    finally:
        running.stop()
        front.stop()
        live.stop()
        ta.appliance.close()
