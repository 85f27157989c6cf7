"""Pre-clearance by polymarket.com URL, against the Polymarket simulator's Gamma API (events and markets by slug,
as docs.polymarket.com's "Fetch by Slug" describes): a market URL or a one-market event resolves to the
market's condition id; an event with several markets asks for a choice (the API error lists them; the portal
offers them in a form); an unknown slug, a lookalike host or Polymarket unreachable answer 4xx/503 and store
nothing; only the public slug is sent."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from appliance.sim.venues.polymarket import GAMMA_MARKETS
from appliance.store.models import PreclearanceRequest
from tests.conduct.conftest import Api
from tests.portal.conftest import csrf_of, signed_in
from tests.support.sim import RunningSim
from tests.sync import conftest as sync_fixtures
from tests.sync.conftest import https_client

sta_factory = sync_fixtures.sta_factory
FED = next(m for m in GAMMA_MARKETS if m.slug == "fed-cut-december-2026")
ELECTION = [m for m in GAMMA_MARKETS if m.event_slug == "presidential-election-winner-2028"]


@pytest.fixture
def sta(sta_factory: Any) -> Any:
    return sta_factory()


@pytest.fixture
def carol(sta: Any) -> Api:
    return Api(https_client(sta), sta, "carol")


def _employee(sta: Any) -> int:
    from tests.conduct.conftest import new_employee

    return int(new_employee(sta, "Pat Predictor"))


def _ask(carol: Api, employee_id: int, url: str, status: int = 201, **more: Any) -> Any:
    response = carol.client.post("/api/v1/preclearances", headers=carol.headers, json={
        "employee_id": employee_id, "market_id": url, "side": "yes", "quantity": "10", **more})
    assert response.status_code == status, response.get_json()
    return response.get_json()


def _stored(sta: Any) -> int:
    with sta.store.read() as session:
        return int(session.execute(select(func.count()).select_from(PreclearanceRequest)).scalar_one())


def test_a_one_market_event_url_resolves_to_its_condition_id(sta: Any, carol: Api, sim: RunningSim) -> None:
    employee_id = _employee(sta)
    before = len(sim.requests_log("polymarket"))  # the simulator is shared by the session's tests
    made = _ask(carol, employee_id, f"https://polymarket.com/event/{FED.event_slug}?tid=123")
    assert made["status"] == "pending"
    with sta.store.read() as session:
        row = session.get(PreclearanceRequest, made["id"])
        assert row is not None and (row.venue, row.market_id) == ("polymarket", FED.condition_id)
    gamma = [e for e in sim.requests_log("polymarket")[before:] if e["path"].endswith(("/events", "/markets"))]
    assert gamma and all(e["query"] == f"slug={FED.event_slug}" for e in gamma)  # the public slug, nothing else


def test_a_market_url_resolves_directly(sta: Any, carol: Api) -> None:
    employee_id = _employee(sta)
    vance = ELECTION[0]
    made = _ask(carol, employee_id, f"https://www.polymarket.com/event/{vance.event_slug}/{vance.slug}")
    with sta.store.read() as session:
        row = session.get(PreclearanceRequest, made["id"])
        assert row is not None and row.market_id == vance.condition_id


def test_an_event_with_several_markets_needs_a_choice(sta: Any, carol: Api) -> None:
    employee_id = _employee(sta)
    url = f"https://polymarket.com/event/{ELECTION[0].event_slug}"
    refused = _ask(carol, employee_id, url, 400)
    message = refused["error"]["message"]
    assert "2 open markets" in message and "market_choice" in refused["error"]["fields"]
    assert all(m.slug in message and m.condition_id in message for m in ELECTION)
    assert _stored(sta) == 0
    newsom = ELECTION[1]
    made = _ask(carol, employee_id, url, market_choice=newsom.slug)
    with sta.store.read() as session:
        row = session.get(PreclearanceRequest, made["id"])
        assert row is not None and row.market_id == newsom.condition_id
    assert _ask(carol, employee_id, url, 400, market_choice="0x" + "0" * 64)["error"]["fields"]["market_choice"]


@pytest.mark.parametrize(("url", "words"), [
    ("https://polymarket.com/event/no-such-event-anywhere", "has no event named"),
    ("https://polymarket.com.evil.example/event/fed-decision-december-2026", "polymarket.com or kalshi.com"),
    ("https://evil.example/event/fed-decision-december-2026", "polymarket.com or kalshi.com"),
    ("https://polymarket.com@evil.example/event/fed-decision-december-2026", "polymarket.com or kalshi.com"),
    ("https://docs.polymarket.com/event/fed-decision-december-2026", "on polymarket.com"),
    ("https://polymarket.com/profile/0xabc", "looks like"),
    ("https://polymarket.com/event/Fed_Decision", "not a Polymarket slug"),
    ("https://polymarket.com/event/highest-temperature-in-austin-on-october-8-2026", "is closed"),
])
def test_bad_urls_are_refused_and_nothing_is_stored(sta: Any, carol: Api, sim: RunningSim, url: str,
                                                    words: str) -> None:
    employee_id = _employee(sta)
    before = len(sim.requests_log("polymarket"))
    refused = _ask(carol, employee_id, url, 400)
    assert words in refused["error"]["message"], refused
    assert _stored(sta) == 0
    if "evil" in url or "docs." in url:
        assert len(sim.requests_log("polymarket")) == before  # refused before anything was sent


def test_polymarket_unreachable_is_503_and_nothing_is_stored(sta: Any, carol: Api, sim: RunningSim) -> None:
    employee_id = _employee(sta)
    sim.control("POST", "polymarket/faults", {"fail_5xx": 20})
    try:
        refused = _ask(carol, employee_id, f"https://polymarket.com/event/{FED.event_slug}", 503)
    finally:
        sim.clear_faults()
    assert "cannot be reached" in refused["error"]["message"]
    assert _stored(sta) == 0


def test_the_portal_offers_the_markets_of_an_event_to_choose_from(sta: Any) -> None:
    from appliance.app import create_app

    employee_id = _employee(sta)
    client = signed_in(create_app(sta.appliance), sta, employee_id)
    url = f"https://polymarket.com/event/{ELECTION[0].event_slug}"
    sent = client.post("/me/preclearances", data={"csrf_token": csrf_of(client), "market_id": url, "side": "yes",
                                                  "quantity": "10", "reason": "hedge"})
    assert sent.status_code == 302
    page = client.get("/me").text
    assert 'id="market-choice-form"' in page and all(m.question in page for m in ELECTION)
    assert _stored(sta) == 0
    chosen = client.post("/me/preclearances", data={
        "csrf_token": csrf_of(client), "market_id": url, "side": "yes", "quantity": "10", "reason": "hedge",
        "market_choice": ELECTION[1].condition_id})
    assert chosen.status_code == 302
    with sta.store.read() as session:
        (row,) = session.execute(select(PreclearanceRequest)).scalars()
        assert (row.market_id, row.reason, row.employee_id) == (ELECTION[1].condition_id, "hedge", employee_id)
    assert 'id="market-choice-form"' not in client.get("/me").text
