"""Employees add, replace and fix their own connections from the portal, through the onboarding flow
itself (scope probe at the venue, sealed secrets, the venue's older key superseded): a key revoked at
the simulator turns the connection broken, the portal says so, and a new read-only key fixes it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from appliance.store.models import AuditEvent, OnboardingToken
from tests.conduct.conftest import QUIET, employee_of
from tests.onboarding.conftest import csrf_from, key_form
from tests.portal.conftest import csrf_of, sign_in
from tests.portal.test_sign_in import printed_link
from tests.support.sim import RunningSim
from tests.sync import conftest as sync_fixtures
from tests.sync.conftest import https_client, onboard

sta_factory = sync_fixtures.sta_factory


@pytest.fixture
def sta(sta_factory: Any) -> Any:
    return sta_factory()


def test_a_broken_connection_is_fixed_from_the_portal(sta: Any, sim: RunningSim) -> None:
    from appliance.services.sync import run_cycle

    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    employee_id = employee_of(sta, cid)
    sim.control("POST", f"kraken/keys/{key['api_key']}/revoke")
    run_cycle(sta.appliance, only=cid, force=True)
    client = https_client(sta)
    assert sign_in(client, printed_link(sta, employee_id)).status_code == 302
    (broken,) = client.get("/api/v1/me/connections").get_json()["connections"]
    assert broken["broken"] and broken["status"] in ("broken", "reonboarding_required")
    page = client.get("/me").text
    assert "need your attention" in page and "Fix: enter a new key" in page

    go = client.post("/me/connections", data={"csrf_token": csrf_of(client), "venue": "kraken"})
    assert go.status_code == 302 and "/onboard/" in go.headers["Location"] and go.headers["Location"].endswith(
        "?venue=kraken")
    onboarding_page = client.get(go.headers["Location"])
    assert onboarding_page.status_code == 200
    token = go.headers["Location"].split("/onboard/")[1].split("?")[0]
    fresh = sim.create_key("kraken", ["read"], history=QUIET)
    submitted = client.post(f"/onboard/{token}", data=key_form(csrf_from(onboarding_page.text), "kraken", fresh))
    assert submitted.status_code == 200, submitted.text[:500]
    (now,) = client.get("/api/v1/me/connections").get_json()["connections"]
    assert now["id"] != cid and now["status"] == "pending" and not now["broken"]
    with sta.store.read() as session:
        link = session.execute(select(OnboardingToken).where(OnboardingToken.employee_id == employee_id)
                               .order_by(OnboardingToken.id.desc())).scalars().first()
        assert link is not None and link.purpose == "reonboard" and link.created_by is None
        assert (link.expires_at - link.created_at).total_seconds() <= 3601
        actions = [e.action for e in session.execute(select(AuditEvent).where(
            AuditEvent.actor_type == "employee").order_by(AuditEvent.id)).scalars()]
    assert "portal.connection_onboard" in actions and "onboarding.submit_key" in actions


def test_a_trading_key_is_refused_from_the_portal_as_from_any_link(sta: Any, sim: RunningSim) -> None:
    cid, _key = onboard(sta, sim, "kraken", history=QUIET)
    employee_id = employee_of(sta, cid)
    client = https_client(sta)
    assert sign_in(client, printed_link(sta, employee_id)).status_code == 302
    made = client.post("/api/v1/me/connections/onboarding-link", headers={"X-CSRF-Token": csrf_of(client)})
    assert made.status_code == 201
    url = made.get_json()["url"]
    path = "/onboard/" + url.split("/onboard/")[1]
    page = client.get(f"{path}?venue=kraken")
    trading = sim.create_key("kraken", ["read", "trade"], history=QUIET)
    refused = client.post(path, data=key_form(csrf_from(page.text), "kraken", trading))
    assert refused.status_code == 422
    (still,) = client.get("/api/v1/me/connections").get_json()["connections"]
    assert still["id"] == cid and still["status"] == "pending"  # untouched (not synced yet)
