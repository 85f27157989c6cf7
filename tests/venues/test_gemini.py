"""Gemini traps, with real ccxt against the simulator: only account keys work in ccxt, only the Auditor
role alone is read-only, MissingRole is an authentication error in ccxt, nonces must rise across fresh
clients, trades need a symbol (derived from what the account shows), transfers come from /v1/transfers.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import ccxt
import pytest
import requests

from appliance.errors import EgressRefused, VenueAuthError, VenuePermissionError, VenueTransient
from appliance.venues.base import Credentials
from appliance.venues.exchanges.gemini import GeminiAdapter
from appliance.venues.registry import VenueRegistry
from appliance.venues.scope_policy import decide
from tests.support.sim import RunningSim
from tests.venues.helpers import creds_of, pages

VENUE = "gemini"
EMPTY = {"trades": 0, "deposits": 0, "withdrawals": 0}


def adapter_of(registry: VenueRegistry) -> GeminiAdapter:
    adapter = registry.get(VENUE)
    assert isinstance(adapter, GeminiAdapter)
    return adapter




def payloads(sim: RunningSim, path: str) -> list[dict[str, Any]]:
    return [json.loads(base64.b64decode(e["headers"]["X-Gemini-Payload"]))
            for e in sim.requests_log(VENUE) if e["path"] == path]


def test_auditor_only_is_accepted_and_trader_or_fund_manager_refused(sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    auditor = adapter.probe_scope(creds_of(sim.create_key(VENUE, ["read"])))
    assert auditor.read_only
    assert auditor.evidence["isAuditor"] is True
    trader = adapter.probe_scope(creds_of(sim.create_key(VENUE, ["read", "trade"])))
    assert trader.read is False  # Auditor cannot be combined: a Trader key is not an Auditor key
    assert trader.trade is True
    message = decide(adapter, trader, "reject").message
    assert "Trader" in message
    assert "Auditor role only" in message


def test_unknown_role_fails_closed(sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    key = sim.create_key(VENUE, ["read"])
    sim.app.state.venues[VENUE].keys[key["api_key"]].extra["roles"] = {"isAccountAdmin": True}
    scope = adapter.probe_scope(creds_of(key))
    assert scope.escalated
    assert not decide(adapter, scope, "accept_unverified").accepted
    assert "isAccountAdmin" in scope.notes[0]


def test_missing_role_is_permission_although_ccxt_says_authentication(
        sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    trader = sim.create_key(VENUE, ["read", "trade"])  # e.g. an accepted key whose role was changed later
    with pytest.raises(ccxt.AuthenticationError):
        adapter.client(creds_of(trader)).privatePostV1Transfers()
    with pytest.raises(VenuePermissionError) as caught:
        adapter.fetch_transactions(creds_of(trader), "deposits", {})
    assert caught.value.venue_code == "MissingRole"
    assert trader["api_key"] not in str(caught.value)


def test_master_key_is_refused_before_anything_leaves(sim: RunningSim, registry: VenueRegistry) -> None:
    sim.control("DELETE", "requests")
    adapter_of(registry).markets()
    sim.control("DELETE", "requests")
    with pytest.raises(VenueAuthError) as caught:
        adapter_of(registry).probe_scope(Credentials("master-AbCdEf0123456789", "secret"))
    assert "account-key" in str(caught.value)
    assert sim.requests_log(VENUE) == []


def test_markets_load_from_the_api_only(sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    sim.control("DELETE", "requests")
    client = adapter.new_client(None)
    adapter.call(client.load_markets, creds=None)  # what markets() does once per process
    assert [(e["method"], e["path"]) for e in sim.requests_log(VENUE)] == [("GET", "/v1/symbols")]
    assert "BTC/USDT" in client.markets


def test_stale_nonce_is_refused_and_fresh_clients_keep_rising(sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    key = sim.create_key(VENUE)
    creds = creds_of(key)
    for _ in range(5):
        adapter.fetch_balances(creds)
    client = adapter.client(creds)
    client.nonce = lambda: sim.app.state.venues[VENUE].keys[key["api_key"]].last_nonce
    with pytest.raises(VenueTransient) as caught:
        adapter.call(client.privatePostV1Balances, creds=creds)
    assert caught.value.venue_code == "InvalidNonce"


def test_bad_signature_and_wrong_request_path_are_refused(sim: RunningSim) -> None:
    key = sim.create_key(VENUE)
    client = ccxt.gemini({"apiKey": key["api_key"], "secret": key["api_secret"], "enableRateLimit": False})
    client.urls["api"] = {"public": sim.base_url(VENUE), "private": sim.base_url(VENUE)}
    client.has["fetchCurrencies"] = False
    assert client.privatePostV1Balances()  # plain ccxt signs what the venue checks
    client.secret = "x" * 28
    with pytest.raises(ccxt.AuthenticationError, match="InvalidSignature"):
        client.privatePostV1Balances()
    client.secret = key["api_secret"]
    signed = client.sign("v1/balances", ["private"], "POST", {})
    headers = dict(signed["headers"])
    sim_url = f"{sim.base_url(VENUE)}/v1/transfers"  # a payload signed for /v1/balances, sent elsewhere
    answer = requests.post(sim_url, headers=headers, data=signed["body"], timeout=5)
    assert answer.status_code == 400
    assert answer.json()["reason"] == "EndpointMismatch"


def test_symbols_are_derived_and_recorded(sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    key = sim.create_key(VENUE, history=EMPTY)
    account = sim.app.state.venues[VENUE].keys[key["api_key"]].account
    account.balances.clear()
    sim.control("POST", f"{VENUE}/keys/{key['api_key']}/deposits", {"deposits": [{"asset": "USD", "amount": "100"}]})
    sim.control("POST", f"{VENUE}/keys/{key['api_key']}/trades", {"trades": [
        {"base": "BTC", "quote": "USD", "side": "buy", "amount": "0.001", "price": "50000"},
        {"base": "SOL", "quote": "USDT", "side": "buy", "amount": "1", "price": "100"}]})
    sim.control("POST", f"{VENUE}/keys/{key['api_key']}/withdrawals", {"withdrawals": [
        {"asset": "BTC", "amount": "0.001"}]})
    sim.control("POST", f"{VENUE}/keys/{key['api_key']}/balances", {"BTC": "0", "SOL": "0", "USDT": "0"})
    account.balances = {"USD": Decimal("50")}  # nothing left but dollars: BTC is known from the withdrawal
    sim.control("DELETE", "requests")
    walked = pages(adapter, creds_of(key), "trades")
    queried = [p["symbol"] for p in payloads(sim, "/v1/mytrades")]
    assert queried == ["btcusd"]
    assert walked[-1].notes["markets"] == ["BTC/USD"]
    assert walked[-1].notes["market_list"] == "derived"
    assert all(json.loads(json.dumps(p.cursor)) == p.cursor for p in walked)  # stored as JSON between pages
    assert [r.market for p in walked for r in p.records] == ["BTC/USD"]  # SOL/USDT left no trace: not covered
    # The next run remembers the market it saw trades in, even with no balance or transfer left.
    account.deposits.clear()
    account.withdrawals.clear()
    account.balances = {}
    sim.control("DELETE", "requests")
    again = pages(adapter, creds_of(key), "trades", walked[-1].cursor)
    assert again[-1].notes["markets"] == ["BTC/USD"]
    assert [p["symbol"] for p in payloads(sim, "/v1/mytrades")] == ["btcusd"]
    assert all(not p.records for p in again)


def test_trades_page_forward_past_500_in_one_market(sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    key = sim.create_key(VENUE, history=EMPTY)
    trades = [{"base": "ETH", "quote": "BTC", "side": "sell", "amount": "0.5", "price": "0.05"}] * 1100
    sim.control("POST", f"{VENUE}/keys/{key['api_key']}/trades", {"trades": trades})
    sim.control("DELETE", "requests")
    records = [r for p in pages(adapter, creds_of(key), "trades") for r in p.records]
    assert len(records) == len({r.venue_tx_id for r in records}) == 1100
    asked = [p for p in payloads(sim, "/v1/mytrades") if p["symbol"] == "ethbtc"]
    assert [p["limit_trades"] for p in asked] == [500, 500, 500]
    assert asked[0]["timestamp"] == 0
    assert asked[1]["timestamp"] == int((records[499].raw or {})["timestampms"])  # inclusive: boundary re-sent
    assert all(r.quote_amount == Decimal("0.025") for r in records)


def test_transfers_page_and_split_by_type(sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    key = sim.create_key(VENUE, history={"trades": 0, "deposits": 70, "withdrawals": 40})
    account = sim.app.state.venues[VENUE].keys[key["api_key"]].account
    sim.control("DELETE", "requests")
    deposits = [r for p in pages(adapter, creds_of(key), "deposits") for r in p.records]
    assert {r.venue_tx_id for r in deposits} == {t.id for t in account.deposits}
    assert len(payloads(sim, "/v1/transfers")) == 3  # 110 transfers, 50 a page
    withdrawals = [r for p in pages(adapter, creds_of(key), "withdrawals") for r in p.records]
    assert {r.venue_tx_id for r in withdrawals} == {t.id for t in account.withdrawals}
    assert all(r.fee_asset == r.asset for r in withdrawals)


def test_guide_says_untick_trader(registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    warnings = " ".join(step.text for step in adapter.guide if step.warning)
    assert "untick" in warnings
    assert "Trader" in warnings
    assert "Fund Manager" in warnings
    assert "account-" in adapter.credential_fields[0].help


def test_orders_and_withdrawals_never_leave(sim: RunningSim, registry: VenueRegistry) -> None:
    """ccxt's create_order stops locally (markets from /v1/symbols carry no precision); the order
    endpoint itself and withdrawals are refused by our egress. Nothing reaches the venue."""
    key = sim.create_key(VENUE, ["read", "trade", "withdraw"])
    client = adapter_of(registry).client(creds_of(key))
    sim.control("DELETE", "requests")
    with pytest.raises(AssertionError, match="precision"):
        client.create_order("BTC/USDT", "limit", "buy", 1, 100)
    with pytest.raises(EgressRefused, match="/v1/order/new"):
        client.privatePostV1OrderNew({"symbol": "btcusdt", "amount": "1", "price": "100", "side": "buy",
                                      "type": "exchange limit"})
    with pytest.raises(EgressRefused, match="/v1/withdraw/BTC"):
        client.withdraw("BTC", 1, "bc1qexampleaddressxxxxxxxxxxxxxxxxxxxxxxxx")
    assert sim.requests_log(VENUE) == []
