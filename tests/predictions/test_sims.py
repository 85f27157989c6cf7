"""The prediction-market simulators speak the venues' wire formats: what a client that got the details
wrong would run into (v2's number-typed amounts, offset and foreign cursors refused, v1's camelCase
arrays, Gamma's closed-market and 20-row defaults, Kalshi's error bodies and read-only behaviour).
"""

from __future__ import annotations

import re
from typing import Any

import requests

from tests.support.sim import RunningSim


def get(sim: RunningSim, venue: str, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{sim.base_url(venue)}{path}", params=params, timeout=10)


def test_polymarket_v2_amounts_are_json_numbers_and_pages_are_cursor_only(sim: RunningSim) -> None:
    address = sim.control("POST", "polymarket/wallets", {"positions": 2, "trades": 5, "activity": 0})["address"]
    page = get(sim, "polymarket", "/v2/trades", user=address, taker_only="false", limit=2, start=1)
    assert page.status_code == 200
    assert re.search(r'"size":\d+(\.\d+)?[,}]', page.text) and re.search(r'"price":\d+(\.\d+)?[,}]', page.text)
    body = page.json()
    assert set(body) == {"data", "pagination"} and body["pagination"]["has_more"] is True
    assert {"transaction_hash", "token_id", "condition_id", "proxy_wallet"} <= set(body["data"][0])
    refusals = {
        "offset": get(sim, "polymarket", "/v2/trades", user=address, offset=10),
        "limit": get(sim, "polymarket", "/v2/trades", user=address, limit=1001),
        "cursor": get(sim, "polymarket", "/v2/trades", user=address, cursor="eyJub3QiOiJvdXJzIn0"),
        "user": get(sim, "polymarket", "/v2/positions", cursor=body["pagination"]["next_cursor"]),
    }
    for parameter, response in refusals.items():
        assert response.status_code == 400, parameter
        error = response.json()
        assert error["code"] == "invalid_request" and error["parameter"] == parameter and error["trace_id"]
    # A trades cursor is typed: it does not open the activity feed.
    foreign = get(sim, "polymarket", "/v2/activity", user=address, cursor=body["pagination"]["next_cursor"])
    assert foreign.status_code == 400


def test_polymarket_v1_and_gamma_defaults(sim: RunningSim) -> None:
    address = sim.control("POST", "polymarket/wallets", {"positions": 0, "trades": 0, "activity": 0})["address"]
    sim.control("POST", f"polymarket/wallets/{address}/positions",
                {"positions": [{"size": "0.5"}, {"size": "12.25"}]})
    v1 = get(sim, "polymarket", "/positions", user=address).json()
    assert isinstance(v1, list) and len(v1) == 1  # sizeThreshold defaults to 1
    assert {"proxyWallet", "conditionId", "avgPrice", "currentValue", "outcomeIndex", "size"} <= set(v1[0])
    v2 = get(sim, "polymarket", "/v2/positions", user=address).json()["data"]
    assert len(v2) == 2  # the v2 floor is 0.1 shares
    open_markets = get(sim, "polymarket", "/markets").json()
    closed_markets = get(sim, "polymarket", "/markets", closed="true", include_tag="true").json()
    assert all(not m["closed"] for m in open_markets) and all(m["closed"] for m in closed_markets)
    assert "tags" not in open_markets[0] and closed_markets[0]["tags"][0]["slug"] == "all"
    assert isinstance(open_markets[0]["outcomes"], str)  # Gamma's JSON-encoded string lists


def test_kalshi_errors_and_public_market_data(sim: RunningSim) -> None:
    unsigned = get(sim, "kalshi", "/trade-api/v2/portfolio/balance")
    assert unsigned.status_code == 401 and set(unsigned.json()["error"]) == {"code", "message"}
    market = get(sim, "kalshi", "/trade-api/v2/markets/KXFEDDECISION-26DEC-C25").json()["market"]
    assert market["yes_bid_dollars"] == "0.6100" and market["status"] == "active"
    missing = get(sim, "kalshi", "/trade-api/v2/markets/NOPE")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    sim.control("POST", "kalshi/faults", {"burst_429": 1, "retry_after": 3})
    try:
        limited = get(sim, "kalshi", "/trade-api/v2/markets/KXFEDDECISION-26DEC-C25")
    finally:
        sim.clear_faults()
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    assert limited.json() == {"error": {"code": "too_many_requests", "message": "too many requests"}}
