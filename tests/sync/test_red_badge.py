"""The red badge in a real browser: a key revoked at the venue shows red on /employees at the next
page load after one polling cycle."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from appliance.app import create_app
from appliance.services.sync import run_cycle
from tests.support.live import LiveServer, browser_page, find_chromium, start_live
from tests.support.sim import RunningSim
from tests.sync.conftest import connection, make_due, onboard

pytestmark = pytest.mark.browser


@pytest.fixture
def live(sta: Any) -> Iterator[LiveServer]:
    if find_chromium() is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("Chromium is missing in CI: `make test` must install it", pytrace=False)
        pytest.skip("Chromium is not installed (make test installs it)")
    server = start_live(create_app(sta.appliance))
    try:
        yield server
    finally:
        server.stop()


def test_a_revoked_key_shows_the_red_badge_after_one_cycle(sta: Any, sim: RunningSim, live: LiveServer) -> None:
    broken_id, key = onboard(sta, sim, "kraken")
    healthy_id, _ = onboard(sta, sim, "okx")
    outcomes = run_cycle(sta.appliance).outcomes
    assert sorted((o.connection_id, o.ok) for o in outcomes) == sorted([(broken_id, True), (healthy_id, True)])
    broken_employee = connection(sta, broken_id).employee_id
    healthy_employee = connection(sta, healthy_id).employee_id

    with browser_page() as page:
        page.goto(f"{live.url}/login")
        page.fill("#username", "alice")
        page.fill("#password", sta.personas["alice"].password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live.url}/")
        page.goto(f"{live.url}/employees")
        assert page.locator('[data-red="1"]').count() == 0

        sim.control("POST", f"kraken/keys/{key['api_key']}/revoke")
        make_due(sta, broken_id, healthy_id)
        run_cycle(sta.appliance)

        page.goto(f"{live.url}/employees")
        red = page.locator(f'tr[data-employee-id="{broken_employee}"] [data-red="1"]')
        assert red.count() == 1
        assert red.inner_text() == "needs attention"
        assert page.locator(f'tr[data-employee-id="{healthy_employee}"] [data-red="1"]').count() == 0
        assert page.locator('[data-red="1"]').count() == 1
        assert "1 employee(s) with a broken connection" in page.locator("div.flash.error").inner_text()
