"""Real Chromium, the employee's whole path: a one-time sign-in link -> a pre-clearance request on /me ->
Compliance approves it on the Pre-clearance page (a second browser) -> the employee trades at the venue
(the simulator) -> the poller's sync -> "matched" on the employee's trade. On both databases."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

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


def test_sign_in_request_decision_trade_poll_matched(sta_factory: Any, sim: RunningSim) -> None:
    from appliance.app import create_app

    sta = sta_factory()
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    employee_id = employee_of(sta, cid)
    live = start_live(create_app(sta.appliance))
    try:
        with browser_page() as employee:
            assert employee.context.browser is not None
            compliance = employee.context.browser.new_context().new_page()  # a second browser: its own cookies
            employee.goto(f"{live.url}/me/sign-in/{printed_link(sta, employee_id)}")
            employee.click("#portal-sign-in")
            employee.wait_for_url(f"{live.url}/me")
            assert "What the firm can see about you" in employee.content()

            employee.fill("#preclearance-form input[name=asset]", "BTC")
            employee.select_option("#preclearance-form select[name=side]", "buy")
            employee.fill("#preclearance-form input[name=quantity]", "1")
            employee.fill("#preclearance-form input[name=reason]", "monthly savings plan")
            employee.click("#preclearance-form button[type=submit]")
            employee.wait_for_url(f"{live.url}/me#requests")
            assert "pending" in employee.inner_text("#requests")

            dashboard_sign_in(compliance, live.url, "carol", sta.personas["carol"].password)
            compliance.wait_for_url(f"{live.url}/")
            compliance.goto(f"{live.url}/preclearances")
            assert "monthly savings plan" in compliance.inner_text("#queue")
            compliance.fill("#queue input[name=comment]", "fine, within policy")
            compliance.click("#queue button[value=approve]")
            compliance.wait_for_url(f"{live.url}/preclearances")
            assert "approved" in compliance.inner_text("#history")

            employee.goto(f"{live.url}/me")
            requests = employee.inner_text("#requests")
            assert "approved" in requests and "fine, within policy" in requests

            add_trades(sim, "kraken", key, [{"base": "BTC", "quote": "USD", "side": "buy", "amount": "0.8",
                                             "price": "100", "when": dt.datetime.now(dt.UTC)}])
            sync(sta, cid)  # the poller's sync of the connection

            employee.goto(f"{live.url}/me")
            row = employee.inner_text("#transactions tbody tr")
            assert "BTC" in row and "matched (request #" in row
            # The employee session opens nothing of the dashboard.
            refused = employee.goto(f"{live.url}/employees")
            assert refused is not None and refused.status == 403
    finally:
        live.stop()
