"""Real Chromium through the real login page."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.live import browser_page

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_login_through_the_login_page(live: Any, ta: Any) -> None:
    alice = ta.personas["alice"]
    with browser_page() as page:
        page.goto(f"{live.url}/login")
        assert page.title().startswith("Sign in")
        page.fill("#username", "alice")
        page.fill("#password", "not the password at all, sorry")
        page.click("button[type=submit]")
        assert "Invalid username or password" in page.content()
        page.fill("#username", "alice")
        page.fill("#password", alice.password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live.url}/")
        assert "Welcome, alice" in page.content()
        cookies = {c["name"]: c for c in page.context.cookies()}
        session = cookies["__Host-vigatra"]
        assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Lax"
        page.click("text=Users")
        assert "carol" in page.content()
        page.click("text=Sign out")
        page.wait_for_url(f"{live.url}/login")
        page.goto(f"{live.url}/admin/users")
        assert page.url.startswith(f"{live.url}/login")
