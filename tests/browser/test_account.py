"""Real Chromium: TOTP enrolment through the account page, then sign-in with the code; the role editor."""

from __future__ import annotations

import re
import time
from typing import Any

import pyotp
import pytest

from tests.support.live import browser_page

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


def sign_in(page: Any, url: str, username: str, password: str, code: str | None = None) -> None:
    page.goto(f"{url}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    if code:
        page.fill("#totp", code)
    page.click("button[type=submit]")


def test_totp_enrolment_and_sign_in(live: Any, ta: Any) -> None:
    carol = ta.personas["carol"]
    with browser_page() as page:
        sign_in(page, live.url, "carol", carol.password)
        page.wait_for_url(f"{live.url}/")
        page.goto(f"{live.url}/account/mfa")
        page.click("text=Start enrolment")
        assert page.locator("svg").count() >= 1  # the QR code, rendered on the appliance
        secret = page.inner_text("#totp-secret").strip()
        assert re.fullmatch(r"[A-Z2-7]{32}", secret)
        page.fill("#code", "000000")
        page.click("text=Turn on two-factor authentication")
        assert "not right" in page.content()
        page.fill("#code", pyotp.TOTP(secret).now())
        page.click("text=Turn on two-factor authentication")
        page.wait_for_url(f"{live.url}/account")
        assert "Two-factor authentication is on" in page.content()
        page.click("text=Sign out")
        sign_in(page, live.url, "carol", carol.password)
        assert "Enter the code from your authenticator app" in page.content()
        # The code used for enrolment cannot be replayed: sign in with the next time step's code
        # (accepted within the one-step drift window).
        sign_in(page, live.url, "carol", carol.password, pyotp.TOTP(secret).at(time.time() + 30))
        page.wait_for_url(f"{live.url}/")
        assert "Welcome, carol" in page.content()


def test_role_editor(live: Any, ta: Any) -> None:
    alice = ta.personas["alice"]
    with browser_page() as page:
        sign_in(page, live.url, "alice", alice.password)
        page.wait_for_url(f"{live.url}/")
        page.goto(f"{live.url}/admin/roles/new")
        page.fill("#role-name", "Desk supervisor")
        page.check("input[aria-label='employees:read']")
        page.check("input[aria-label='transactions:read']")
        page.select_option("#scope-transactions", "flagged")
        page.click("text=Create role")
        page.wait_for_url(f"{live.url}/admin/roles")
        assert "Desk supervisor" in page.content()
        assert "transactions:read:flagged" in page.content()
        page.click("table a:has-text('Desk supervisor')")
        assert page.is_checked("input[aria-label='employees:read']")
        assert not page.is_checked("input[aria-label='audit:read']")
        page.goto(f"{live.url}/admin/roles")
        page.click("table a:text-is('Admin')")
        assert page.is_disabled("input[aria-label='audit:read']")  # built-in roles are read-only
