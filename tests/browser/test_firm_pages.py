"""Real Chromium through the pages issue 22's second round added, per role (Admin, Compliance, Viewer): the
firm-wide views (holdings by asset, an asset's holders, recent large trades), the audit trail newest first, the
employee page's coverage timeline, and the overview's pre-clearance panel — each renders without a console
error or CSP violation, a role that may not open a page is refused, the overview's pre-clearance figure is the
API's, and each page is saved as a screenshot under ``test-artefacts/screenshots/``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import insert

from appliance.store.base import utcnow
from appliance.store.models import CoverageInterval, PreclearanceRequest
from tests.access.helpers import auth, token
from tests.browser.test_dashboard import ROLES, shoot, sign_in, watch_console
from tests.support.live import browser_page
from tests.web import test_firm_views

pytestmark = pytest.mark.browser  # both databases (the db_url fixture is parametrised)

PAGES = {  # page -> the roles that may open it
    "/holdings": ("Admin", "Compliance"), "/holdings/BTC": ("Admin", "Compliance"),
    "/trades/large": ("Admin", "Compliance"), "/predictions": ("Admin", "Compliance"),
    "/audit": ("Admin", "Compliance"), "/employees/2": ("Admin", "Compliance", "Viewer"),
    "/": ("Admin", "Compliance", "Viewer"),
}


def seed(ta: Any) -> None:
    test_firm_views.seed(ta)
    now = utcnow()
    with ta.store.unit_of_work() as session:
        session.execute(insert(CoverageInterval), [
            {"connection_id": 2, "stream": "trades", "kind": "complete", "start_at": now - dt.timedelta(days=30),
             "end_at": now - dt.timedelta(hours=1)},
            {"connection_id": 2, "stream": "trades", "kind": "gap", "start_at": now - dt.timedelta(days=12),
             "end_at": now - dt.timedelta(days=10), "reason": "venue_down", "closed_at": now - dt.timedelta(days=9)},
            {"connection_id": 2, "stream": "trades", "kind": "gap", "start_at": now - dt.timedelta(hours=5),
             "reason": "auth_error"}])
        session.execute(insert(PreclearanceRequest), [
            {"employee_id": 1, "kind": "asset", "asset": "ETH", "side": "buy", "quantity": 3, "status": "pending",
             "submitted_via": "portal", "created_at": now - dt.timedelta(hours=30)}])


def test_the_new_pages_per_role(live: Any, ta: Any, client: Any) -> None:
    seed(ta)
    for persona, role in ROLES.items():
        api = client.get("/api/v1/overview", headers=auth(token(client, ta, persona))).get_json()
        with browser_page() as page:
            problems = watch_console(page)
            sign_in(page, live.url, persona, ta.personas[persona].password)
            for path, roles in PAGES.items():
                response = page.goto(f"{live.url}{path}")
                assert response is not None
                if role not in roles:
                    assert response.status == 403, (persona, path, response.status)
                    problems[:] = [p for p in problems if "Failed to load resource" not in p]
                    continue
                assert response.status == 200, (persona, path, response.status)
                shoot(page, f"{role.lower()}-{path.strip('/').replace('/', '-') or 'overview'}-22f")
                if path == "/":
                    panel = api["panels"].get("preclearance")
                    element = page.query_selector("[data-figure=preclearance_pending]")
                    if panel is None:
                        assert element is None, persona
                    else:
                        assert element is not None and int(element.inner_text()) == panel["preclearance_pending"] == 1
                if path == "/employees/2":
                    timeline = page.locator("svg.timeline")
                    assert timeline.count() == 1 and page.locator("svg.timeline title").count() >= 4
                    assert page.locator("#coverage-table tbody tr").count() == 3
                if path == "/audit":
                    ids = [int(x) for x in page.locator("#audit tbody tr").evaluate_all(
                        "rows => rows.map(r => r.dataset.id)")]
                    assert ids == sorted(ids, reverse=True) and len(ids) > 1
            assert problems == [], (persona, problems)
