"""What leaves the box when the appliance prices: public market-data reads only, to allowlisted hosts, without
credentials or employee data — checked on a log of every request the process sent (the transport's own log,
below ccxt and the egress layer) and on the simulators' request log."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from appliance.errors import EgressRefused
from appliance.store.models import Employee
from appliance.venues.marketdata import MARKET_DATA_ENDPOINTS, ExchangeMarketData
from tests.support.sim import RunningSim
from tests.sync.conftest import onboard
from tests.valuation.conftest import add_trade, poll, price, set_balances

# Headers that carry a key or a signature on any of the venues.
CREDENTIAL_HEADERS = ("authorization", "x-mbx-apikey", "api-key", "api-sign", "ok-access-key", "ok-access-sign",
                      "kc-api-key", "kc-api-sign", "x-bapi-api-key", "x-bapi-sign", "x-gemini-apikey",
                      "x-gemini-signature", "x-auth", "x-auth-signature", "cb-access-key", "kalshi-access-key",
                      "kalshi-access-signature")
# Public paths the pricing run may use besides the exchanges' market data: prediction markets' own prices.
PREDICTION_PATHS = {"kalshi": ("/trade-api/v2/markets/",), "polymarket": ("/markets",)}


def test_pricing_sends_only_public_market_data_reads_to_allowlisted_hosts(sta: Any, sim: RunningSim,
                                                                          sent: list[Any]) -> None:
    secrets: list[str] = []
    connections = []
    for venue in ("binance", "coinbase", "okx", "kraken", "bybit", "kucoin", "gemini", "bitstamp"):
        cid, key = onboard(sta, sim, venue, history={"trades": 2, "deposits": 1, "withdrawals": 0})
        secrets += [v for k, v in key.items() if k in ("api_key", "api_secret", "passphrase") and v]
        connections.append(cid)
    kalshi, kalshi_key = onboard(sta, sim, "kalshi", history={"positions": 2, "fills": 1, "settlements": 0})
    secrets.append(kalshi_key["api_key"])
    connections.append(kalshi)
    poll(sta, *connections)
    with sta.store.read() as session:
        people = [(e.name, e.email) for e in session.query(Employee).all()]

    sent.clear()
    sim.control("DELETE", "requests")
    result = price(sta)
    assert result.assets and result.transactions
    requests_sent = [r for r in sent if "/_sim/" not in (r.url or "")]
    assert requests_sent, "pricing asked the venues"
    sim_host = urlsplit(sim.url).netloc
    for request in requests_sent:
        parts = urlsplit(request.url)
        assert parts.netloc == sim_host, f"{request.method} {request.url}: not an allowlisted host"
        venue, path = parts.path.split("/", 2)[1], "/" + parts.path.split("/", 2)[2]
        assert request.method == "GET", request.url
        if venue in MARKET_DATA_ENDPOINTS:
            # Market data, or the public market list a venue's pairs come from (loaded once per process).
            rules = (*MARKET_DATA_ENDPOINTS[venue], *sta.appliance.venues.get(venue).read_endpoints)
            assert any(rule.matches("GET", path) for rule in rules), f"{venue} {path} is not an allowlisted read"
        else:
            assert path.startswith(PREDICTION_PATHS[venue]), f"{venue} {path}"
        headers = {h.lower() for h in request.headers}
        assert not headers & set(CREDENTIAL_HEADERS), f"{request.url} carries credentials: {headers}"
        text = unquote(request.url) + (request.body.decode() if isinstance(request.body, bytes) else
                                       str(request.body or ""))
        for secret in secrets:
            assert secret not in text
        for name, email in people:
            assert name not in text and email not in text

    # The simulators saw the same thing: public reads, no signature.
    logged = [e for e in sim.requests_log() if not e["path"].startswith("/_sim")]
    assert len(logged) == len(requests_sent)
    assert all(not {h.lower() for h in e["headers"]} & set(CREDENTIAL_HEADERS) for e in logged)


def test_the_market_data_session_refuses_everything_but_market_data(sta: Any, sim: RunningSim) -> None:
    market = ExchangeMarketData(sta.appliance.venues.get("binance"))
    session = market.client().session
    with pytest.raises(EgressRefused, match=r"GET /api/v3/account is not on the read-only allowlist"):
        session.request("GET", "https://api.binance.com/api/v3/account?timestamp=1&signature=x")
    with pytest.raises(EgressRefused, match=r"host prices\.example\.com is not on the egress allowlist"):
        session.request("GET", "https://prices.example.com/api/v3/klines?symbol=BTCUSDT")
    with pytest.raises(EgressRefused, match="is not on the read-only allowlist"):
        session.request("POST", "https://api.binance.com/api/v3/order")
    assert market.client().apiKey in ("", None) and market.client().secret in ("", None)


# One path of each market-data endpoint, as ccxt asks them.
MARKET_DATA_PATHS = {
    "binance": ("/api/v3/ticker/24hr", "/api/v3/klines"), "binanceus": ("/api/v3/ticker/24hr", "/api/v3/klines"),
    "bybit": ("/v5/market/tickers", "/v5/market/kline"),
    "coinbase": ("/api/v3/brokerage/market/products/BTC-USD/ticker",
                 "/api/v3/brokerage/market/products/BTC-USD/candles"),
    "kraken": ("/0/public/Ticker", "/0/public/OHLC"), "gemini": ("/v1/pubticker/btcusd", "/v2/candles/btcusd/1hr"),
    "okx": ("/api/v5/market/ticker", "/api/v5/market/candles", "/api/v5/market/history-candles"),
    "kucoin": ("/api/v1/market/stats", "/api/v1/market/candles"),
    "bitstamp": ("/api/v2/ticker/btcusd/", "/api/v2/ohlc/btcusd/"),
}


def test_market_data_requests_spend_the_venues_documented_limits(sta: Any) -> None:
    """With no configured budget (the default), only the documented limits space requests: every market-data
    endpoint must be under one, or the pricing job would ask a venue as fast as it answers."""
    assert set(MARKET_DATA_PATHS) == set(MARKET_DATA_ENDPOINTS)
    for venue, paths in MARKET_DATA_PATHS.items():
        market = ExchangeMarketData(sta.appliance.venues.get(venue))
        assert market.client().session.limits == market.limits
        for path in paths:
            assert any(rule.matches("GET", path) for rule in market.endpoints), f"{venue} {path}"
            limits = [limit for limit in market.limits if limit.applies(path) and not limit.per_account]
            assert limits and all(limit.source for limit in limits), f"{venue} {path}: no documented limit"


def test_a_sync_makes_no_market_data_request(sta: Any, sim: RunningSim) -> None:
    cid, key = onboard(sta, sim, "kraken", history={"trades": 2, "deposits": 1, "withdrawals": 1})
    set_balances(sim, "kraken", key["api_key"], {"BTC": "1"})
    add_trade(sim, "kraken", key["api_key"], base="BTC", quote="USD", side="buy", amount="1", price="1", fee="0",
              fee_asset="USD")
    sim.control("DELETE", "requests")
    poll(sta, cid)
    paths = {e["path"] for e in sim.requests_log("kraken")}
    assert paths and not paths & {"/0/public/Ticker", "/0/public/OHLC"}, "pricing is its own job, after the syncs"


def test_pricing_is_a_poller_job_of_its_own(sta: Any) -> None:
    from appliance.poller.jobs import extra_jobs, price_tick
    from appliance.settings import settings_from_mapping

    on = settings_from_mapping({"poller": {"enabled": True}, "valuation": {"interval_minutes": 7}})
    (job,) = [j for j in extra_jobs(on) if j.id == "price_tick"]
    assert job.func is price_tick and job.seconds == 7 * 60
    off = settings_from_mapping({"poller": {"enabled": True}, "valuation": {"enabled": False}})
    assert "price_tick" not in {j.id for j in extra_jobs(off)}
