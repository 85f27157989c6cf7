"""Real Chromium: the employee opens the quarterly task on /me (a trade synced through ccxt from the
simulator is listed), adds a manual entry, declares an account, certifies with the typed name; a reviewer in
a second browser opens the submission (the employee becomes flagged, with the reason shown) and approves
it; the employee sees it approved. On both databases."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from appliance.services.attestations import campaigns
from appliance.store.models import Employee
from tests.attestations.test_certification import current_quarter
from tests.browser.conftest import _need_chromium  # noqa: F401  (skips without Chromium; fails in CI)
from tests.browser.test_account import sign_in as dashboard_sign_in
from tests.conduct.conftest import QUIET, add_trades, employee_of, sync
from tests.portal.conftest import printed_link
from tests.support.live import browser_page, start_live
from tests.support.sim import RunningSim
from tests.sync import conftest as sync_fixtures
from tests.sync.conftest import onboard

sta_factory = sync_fixtures.sta_factory
pytestmark = [pytest.mark.browser]


def test_quarterly_certification_and_approval(sta_factory: Any, sim: RunningSim) -> None:
    from appliance.app import create_app

    sta = sta_factory()
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    employee_id = employee_of(sta, cid)
    add_trades(sim, "kraken", key, [{"base": "BTC", "quote": "USD", "side": "buy", "amount": "0.25",
                                     "price": "100", "when": dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)}])
    sync(sta, cid)
    with sta.store.unit_of_work() as session:
        employee = session.get(Employee, employee_id)
        assert employee is not None
        name = employee.name
        campaigns.set_access_person(session, sta.settings, employee, True)
        campaign = campaigns.create(session, sta.settings, None, kind="quarterly_transactions",
                                    period=current_quarter())
        task_id = next(t.id for t, e in campaigns.tasks_of(session, campaign.id) if e.id == employee_id)
    live = start_live(create_app(sta.appliance))
    try:
        with browser_page() as page:
            assert page.context.browser is not None
            reviewer = page.context.browser.new_context().new_page()  # a second browser: its own cookies
            page.goto(f"{live.url}/me/sign-in/{printed_link(sta, employee_id)}")
            page.click("#portal-sign-in")
            page.wait_for_url(f"{live.url}/me")
            assert campaign.title in page.inner_text("#tasks")
            page.click(f"#tasks tr[data-task='{task_id}'] a")
            page.wait_for_url(f"{live.url}/me/tasks/{task_id}")
            assert "BTC" in page.inner_text("#records")

            page.fill("#manual-form input[name=asset]", "SOL")
            page.fill("#manual-form input[name=quantity]", "12")
            page.fill("#manual-form input[name=principal]", "1800")
            page.fill("#manual-form input[name=venue]", "Phantom wallet")
            page.fill("#manual-form input[name=date]", dt.datetime.now(dt.UTC).date().isoformat())
            page.select_option("#manual-form select[name=nature]", "buy")
            page.click("#manual-form button[type=submit]")
            page.wait_for_url(f"{live.url}/me/tasks/{task_id}#manual")
            manual = page.inner_text("#manual")
            assert "SOL" in manual and "manual" in manual and "Phantom wallet" in manual

            page.fill("#declare-form input[name=venue]", "Coinbase")
            page.fill("#declare-form input[name=account]", "personal account")
            page.fill("#declare-form input[name=reason]", "it offers no read-only key")
            page.click("#declare-form button[type=submit]")
            page.wait_for_url(f"{live.url}/me/tasks/{task_id}#declared")
            assert "it offers no read-only key" in page.inner_text("#declared")

            page.check("#certify-form input[name=confirm]")
            page.fill("#certify-form input[name=typed_name]", "Someone Else")
            page.click("#certify-form button[type=submit]")
            page.wait_for_url(f"{live.url}/me/tasks/{task_id}#certify")
            assert "Not certified" in page.content() and "your name" in page.content()
            page.check("#certify-form input[name=confirm]")
            page.fill("#certify-form input[name=typed_name]", name)
            page.click("#certify-form button[type=submit]")
            page.wait_for_url(f"{live.url}/me/tasks/{task_id}")
            assert page.get_attribute("#task-status", "data-status") == "submitted"

            dashboard_sign_in(reviewer, live.url, "carol", sta.personas["carol"].password)
            reviewer.wait_for_url(f"{live.url}/")
            reviewer.goto(f"{live.url}/attestations")
            reviewer.click("#reviews tbody tr a")
            reviewer.click("#open-form button[type=submit]")
            reviewer.wait_for_selector("#decision-form")
            content = reviewer.content()
            assert "it offers no read-only key" in content and "Phantom wallet" in content and "BTC" in content
            assert "under review" in reviewer.inner_text("#flag-reason")
            reviewer.click("#decision-form button[value=approve]")
            reviewer.wait_for_url(f"{live.url}/attestations/campaigns/{campaign.id}")
            assert "approved" in reviewer.inner_text(f"tr[data-task='{task_id}']")

            page.goto(f"{live.url}/me/tasks/{task_id}")
            assert page.get_attribute("#task-status", "data-status") == "approved"
    finally:
        live.stop()
