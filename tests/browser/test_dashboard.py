"""Real Chromium through the dashboard's pages, per role: every page renders without an error and without a
Content-Security-Policy violation in the console, the overview's numbers are the API's, the employees list
pages and filters at 10,000 employees. Each page is saved as a screenshot under ``test-artefacts/screenshots/``
(or ``$VIGATRA_TEST_ARTEFACTS/screenshots``) for a person to look at."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.access.helpers import auth, token
from tests.support.live import browser_page
from tests.web import test_employees_list, test_overview

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

ARTEFACTS = Path(os.environ.get("VIGATRA_TEST_ARTEFACTS", Path(__file__).resolve().parents[2] / "test-artefacts"))
PAGES = {  # page -> the permission that shows it in the menu (None: every signed-in user)
    "/": None, "/employees": "employees:read", "/employees/1": "employees:read", "/alerts": "alerts:read",
    "/predictions": "predictions:read", "/reports": "reports:read", "/audit": "audit:read", "/account": None,
}
ROLES = {"alice": "Admin", "carol": "Compliance", "victor": "Viewer"}


def sign_in(page: Any, url: str, username: str, password: str) -> None:
    page.goto(f"{url}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")


def watch_console(page: Any) -> list[str]:
    """Console errors and CSP violations the page reports (the test fails on any)."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    return problems


def shoot(page: Any, name: str) -> None:
    folder = ARTEFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_every_page_per_role_renders_cleanly_and_the_overview_matches_the_api(live: Any, ta: Any,
                                                                               client: Any) -> None:
    test_overview.seed(ta)
    for persona, role in ROLES.items():
        api = client.get("/api/v1/overview", headers=auth(token(client, ta, persona))).get_json()
        with browser_page() as page:
            problems = watch_console(page)
            sign_in(page, live.url, persona, ta.personas[persona].password)
            for path, permission in PAGES.items():
                allowed = permission is None or permission in _permissions(ta, persona)
                response = page.goto(f"{live.url}{path}")
                assert response is not None
                if not allowed:
                    assert response.status in (403, 404), (persona, path, response.status)
                    # The browser logs the refused document itself; nothing else may be logged.
                    problems[:] = [p for p in problems if "Failed to load resource" not in p]
                    continue
                assert response.status == 200, (persona, path, response.status)
                shoot(page, f"{role.lower()}-{path.strip('/').replace('/', '-') or 'overview'}")
                if path == "/":
                    shown = {key: page.get_attribute(f"[data-panel={key}]", "data-panel")
                             for key in api["panels"]}
                    assert all(shown.values()), (persona, shown)
                    for figure in ("alerts_open", "connections_red"):
                        element = page.query_selector(f"[data-figure={figure}]")
                        if api[figure] is None:
                            assert element is None
                        else:
                            assert element is not None and int(element.inner_text().replace(",", "")) == api[figure]
                    if api["value_total"] is not None:
                        assert page.get_attribute("[data-figure=value_total]", "data-value") == api["value_total"]
                        assert page.locator("svg.chart title").count() >= 1  # charts carry their text alternative
            assert problems == [], (persona, problems)


def _permissions(ta: Any, persona: str) -> set[str]:
    from appliance.rbac.permissions import BUILTIN_ROLES

    granted = set()
    for role in ta.personas[persona].roles:
        granted |= {p.removesuffix(":flagged") for p in BUILTIN_ROLES[role][1]}
    return granted


def test_the_employees_list_pages_and_filters_at_ten_thousand(live: Any, ta: Any) -> None:
    ids = test_employees_list.seed(ta)
    with browser_page() as page:
        problems = watch_console(page)
        sign_in(page, live.url, "carol", ta.personas["carol"].password)
        page.goto(f"{live.url}/employees")
        assert "10,000 employees · page 1 of 200" in page.inner_text("#employees-count")
        page.click("a[rel=next]")
        page.wait_for_url(re.compile(r".*page=2.*"))
        assert page.get_attribute("#employees tbody tr", "data-employee-id") == str(ids[50])
        page.fill("#f-q", "p0012")
        page.select_option("#f-red", "")
        page.click("form.filters button[type=submit]")
        page.wait_for_url(re.compile(r".*q=p0012.*"))
        assert page.locator("#employees tbody tr").count() == 10
        page.fill("#f-q", "")
        page.select_option("#f-red", "yes")
        page.select_option("#f-alerts", "no")
        page.click("form.filters button[type=submit]")
        page.wait_for_url(re.compile(r".*red=yes.*"))
        expected = [i for i in range(test_employees_list.EMPLOYEES)
                    if test_employees_list.red(i) and not test_employees_list.alerted(i)]
        assert f"{len(expected)} employees match" in page.inner_text("#employees-count")
        page.click("text=Department")  # sort by a column, then back
        page.wait_for_url(re.compile(r".*sort=department.*"))
        assert page.get_attribute("th a[aria-sort]", "aria-sort") == "ascending"
        shoot(page, "compliance-employees-filtered")
        assert problems == [], problems
