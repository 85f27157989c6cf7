"""Real Chromium: Compliance flags an employee from the employee page, then works the case: a refused
close keeps the form and says what is missing; assignment by name, a note, closing with a reason."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.test_account import sign_in
from tests.support.live import browser_page

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


def test_flag_and_work_a_case(live: Any, ta: Any) -> None:
    from appliance.services import employees

    with ta.store.unit_of_work() as session:
        employee = employees.create(session, name="Bea Browser", email="bea@example.com").id
    with browser_page() as page:
        sign_in(page, live.url, "carol", ta.personas["carol"].password)
        page.wait_for_url(f"{live.url}/")
        page.goto(f"{live.url}/employees/{employee}")
        assert "no open or recent alert" in page.content()
        page.fill("#f-title", "Tip-off from the desk")
        page.click("#flag-employee button[type=submit]")
        assert "reason is required" in page.content()
        assert page.input_value("#f-title") == "Tip-off from the desk"
        page.fill("#f-reason", "A colleague heard about trades before the announcement.")
        page.click("#flag-employee button[type=submit]")
        page.wait_for_url(f"{live.url}/alerts/*")
        assert "the employee is now flagged" in page.content()

        page.select_option("#as-user", label="alice")
        page.click("#assign-form button[type=submit]")
        assert page.inner_text("#case-assignee") == "alice"
        page.fill("#n-text", "Asked Bea for her statements.")
        page.click("#note-form button[type=submit]")
        page.select_option("#st-status", "resolved")
        page.click("#status-form button[type=submit]")
        assert "a reason is required" in page.content()
        page.select_option("#st-status", "resolved")
        page.fill("#st-reason", "Statements match the pre-clearance.")
        page.click("#status-form button[type=submit]")
        assert page.inner_text("#case-status") == "resolved"
        history = page.inner_text("#history")
        assert "raised the alert" in history and "assigned it to alice" in history
        assert "added a note" in history and "to resolved: Statements match the pre-clearance." in history
        assert "Asked Bea for her statements." in page.inner_text("#notes")

        page.goto(f"{live.url}/employees/{employee}")
        assert "Why you see Bea Browser" in page.content() and "visible until" in page.content()
