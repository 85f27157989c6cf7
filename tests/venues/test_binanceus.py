"""Binance.US: Binance's protocol on api.binance.us; the permission endpoint is unverified there.

When apiRestrictions answers 404 or an error, a key that authenticates gets an *unknown* scope (the
unverified policy decides, reject by default); a key that does not authenticate is still an
authentication error; a rate limit or outage is never turned into "unknown".
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from appliance.errors import VenueAuthError, VenueRateLimited, VenueTransient
from appliance.sim.core import Response
from appliance.sim.venues.binance import BinanceSim
from appliance.venues.exchanges.binanceus import BinanceUsAdapter
from appliance.venues.registry import VenueRegistry
from appliance.venues.scope_policy import decide
from tests.support.sim import RunningSim
from tests.venues.helpers import creds_of

NOT_FOUND = Response(404, "<html><body><h1>404 Not Found</h1></body></html>", content_type="text/html")
NOT_AUTHORISED = Response(401, {"code": -1002, "msg": "You are not authorized to execute this request."})



@pytest.fixture
def adapter(registry: VenueRegistry) -> BinanceUsAdapter:
    found = registry.get("binanceus")
    assert isinstance(found, BinanceUsAdapter)
    return found


@pytest.fixture
def venue_sim(sim: RunningSim) -> Iterator[BinanceSim]:
    venue = sim.app.state.venues["binanceus"]
    assert isinstance(venue, BinanceSim)
    yield venue
    venue.restrictions_answer = None


@pytest.mark.parametrize("answer", [NOT_FOUND, NOT_AUTHORISED], ids=["404", "error"])
def test_missing_permission_endpoint_fails_closed(sim: RunningSim, adapter: BinanceUsAdapter,
                                                  venue_sim: BinanceSim, answer: Response) -> None:
    venue_sim.restrictions_answer = answer
    key = sim.create_key("binanceus", ["read", "trade", "withdraw"])
    scope = adapter.probe_scope(creds_of(key))
    assert not scope.verified
    assert (scope.trade, scope.transfer, scope.withdraw) == (None, None, None)
    assert scope.evidence["apiRestrictions"] == "unavailable"
    rejected = decide(adapter, scope, "reject")
    assert not rejected.accepted
    assert not rejected.verified
    assert "Binance.US" in rejected.message
    assert decide(adapter, scope, "accept_unverified").accepted


def test_missing_permission_endpoint_still_detects_a_revoked_key(sim: RunningSim, adapter: BinanceUsAdapter,
                                                                 venue_sim: BinanceSim) -> None:
    venue_sim.restrictions_answer = NOT_FOUND
    key = sim.create_key("binanceus", ["read"])
    sim.control("POST", f"binanceus/keys/{key['api_key']}/revoke")
    with pytest.raises(VenueAuthError):
        adapter.probe_scope(creds_of(key))


def test_rate_limit_and_outage_are_not_unknown_scope(sim: RunningSim, adapter: BinanceUsAdapter) -> None:
    key = sim.create_key("binanceus", ["read"])
    adapter.markets()
    sim.control("POST", "binanceus/faults", {"fail_5xx": 1})
    with pytest.raises(VenueTransient):
        adapter.probe_scope(creds_of(key))
    sim.control("POST", "binanceus/faults", {"burst_429": 1, "retry_after": 5})  # last: it blocks the limiter
    with pytest.raises(VenueRateLimited):
        adapter.probe_scope(creds_of(key))


def test_served_permission_endpoint_verifies_as_on_binance(sim: RunningSim, adapter: BinanceUsAdapter) -> None:
    read_only = adapter.probe_scope(creds_of(sim.create_key("binanceus", ["read"])))
    assert read_only.verified
    assert read_only.read_only
    trading = adapter.probe_scope(creds_of(sim.create_key("binanceus", ["read", "trade"])))
    decision = decide(adapter, trading, "reject")
    assert not decision.accepted
    assert "Exchange API key" in decision.message


def test_talks_to_binance_us_only(sim: RunningSim, adapter: BinanceUsAdapter) -> None:
    key = sim.create_key("binanceus", ["read"])
    client = adapter.client(creds_of(key))
    assert client.urls["api"]["private"].startswith("https://api.binance.us/")
    assert adapter.hosts == ("api.binance.us",)
    sim.control("DELETE", "requests")
    adapter.fetch_balances(creds_of(key))
    assert [r["path"] for r in sim.requests_log("binanceus")] == ["/api/v3/account"]
    assert sim.requests_log("binance") == []
