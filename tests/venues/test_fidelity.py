"""Issue 23's findings, each against a simulator that answers as the venue's documentation says (the real ccxt
client, signatures verified): error bodies, transfer statuses, internal deposits, permission codes.
Kraken's read-only recipe is in test_kraken.py (finding 5)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import ccxt
import pytest

from appliance.errors import VenueAuthError, VenuePermissionError, VenueRateLimited
from appliance.services import onboarding
from appliance.venues.base import TxStatus
from appliance.venues.registry import VenueRegistry
from tests.support.sim import RunningSim
from tests.venues.helpers import creds_of, drain

EMPTY = {"trades": 0, "deposits": 0, "withdrawals": 0}


# -- finding 1: Coinbase's documented error body ---------------------------------------------------------

def test_coinbase_documented_error_body_is_authentication_at_once(sim: RunningSim, registry: VenueRegistry) -> None:
    """Advanced Trade's error is its gRPC gateway status ({"error": "UNAUTHENTICATED", "code": 16, ...}, HTTP 401):
    an invalid or revoked key is an authentication error — onboarding says so, a sync turns the connection red."""
    adapter = registry.get("coinbase")
    key = sim.create_key("coinbase", ["read"])
    creds = creds_of(key)
    adapter.fetch_balances(creds)
    sim.control("POST", f"coinbase/keys/{key['api_key']}/revoke")
    for call in (adapter.fetch_balances, adapter.probe_scope):
        with pytest.raises(VenueAuthError) as caught:
            call(creds)
        assert caught.value.venue_code == "UNAUTHENTICATED"
    outcome = onboarding.probe(adapter, creds, "reject")  # type: ignore[arg-type]
    assert outcome.error_class == "authentication"
    assert "did not accept this key" in outcome.message


def test_http_status_decides_before_an_unknown_body(registry: VenueRegistry) -> None:
    """Coinbase documents 401 as an invalid key and 403 as a missing scope, whatever the body says."""
    adapter: Any = registry.get("coinbase")

    class Client:
        class session:  # stands for the egress session of the client that sent the request
            last_status = 401

    error = adapter.classify(ccxt.ExchangeError('coinbase {"error":"SOMETHING_NEW","message":"x"}'), None, Client)
    assert isinstance(error, VenueAuthError)
    Client.session.last_status = 403
    assert isinstance(adapter.classify(ccxt.ExchangeError("coinbase Forbidden"), None, Client), VenuePermissionError)
    # No status (no answer, or a 200 body error): the gRPC name or number decides.
    Client.session.last_status = 200
    body = json.dumps({"error": "", "code": 8, "message": "slow down", "details": []})
    assert isinstance(adapter.classify(ccxt.ExchangeError("coinbase " + body), None, Client), VenueRateLimited)
    body = json.dumps({"error": "PERMISSION_DENIED", "code": 7, "message": "no", "details": []})
    assert isinstance(adapter.classify(ccxt.ExchangeError("coinbase " + body), None, Client), VenuePermissionError)


def test_coinbase_bare_unauthorized_text_is_authentication_too(sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = registry.get("coinbase")
    key = sim.create_key("coinbase", ["read"])
    sim.control("POST", "coinbase/auth_error_style", {"style": "text"})
    try:
        sim.control("POST", f"coinbase/keys/{key['api_key']}/revoke")
        with pytest.raises(VenueAuthError):
            adapter.fetch_balances(creds_of(key))
    finally:
        sim.control("POST", "coinbase/auth_error_style", {"style": "grpc"})


def test_coinbase_missing_view_scope_is_permission(sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = registry.get("coinbase")
    key = sim.create_key("coinbase", ["read"])
    sim.control("POST", f"coinbase/keys/{key['api_key']}/permissions", {"permissions": []})
    with pytest.raises(VenuePermissionError) as caught:
        adapter.fetch_balances(creds_of(key))
    assert caught.value.venue_code == "PERMISSION_DENIED"


# -- finding 2: failed, cancelled and pending transfers -----------------------------------------------------

STATUS_VENUES = ["binance", "binanceus", "okx", "bybit", "kucoin", "coinbase"]
# What a cancelled withdrawal is at each venue (KuCoin documents no cancelled status: it ends as FAILURE).
CANCELLED = {"kucoin": TxStatus.FAILED}


@pytest.mark.parametrize("venue", STATUS_VENUES)
def test_transfers_carry_their_documented_status(sim: RunningSim, registry: VenueRegistry, venue: str) -> None:
    adapter = registry.get(venue)
    key = sim.create_key(venue, ["read"], history=EMPTY)
    api_key = key["api_key"]
    made = sim.control("POST", f"{venue}/keys/{api_key}/withdrawals", {"withdrawals": [
        {"asset": "BTC", "amount": "0.1", "status": status} for status in ("ok", "failed", "cancelled", "pending")]})
    deposits = sim.control("POST", f"{venue}/keys/{api_key}/deposits", {"deposits": [
        {"asset": "ETH", "amount": "2", "status": "rejected"}, {"asset": "ETH", "amount": "3", "status": "pending"},
        {"asset": "ETH", "amount": "4"}]})
    creds = creds_of(key)
    withdrawals, _ = drain(adapter, creds, "withdrawals")
    got = {r.amount: r for r in withdrawals}
    assert len(withdrawals) == 4
    statuses = sorted(r.status for r in withdrawals)
    cancelled = CANCELLED.get(venue, TxStatus.CANCELLED)
    assert statuses == sorted([TxStatus.COMPLETED, TxStatus.FAILED, cancelled, TxStatus.PENDING]), venue
    assert all(r.amount == Decimal("0.1") for r in got.values())
    received, _ = drain(adapter, creds, "deposits")
    by_amount = {r.amount: r.status for r in received}
    assert by_amount == {Decimal("2"): TxStatus.FAILED, Decimal("3"): TxStatus.PENDING,
                         Decimal("4"): TxStatus.COMPLETED}, venue
    assert len(made["ids"]) == 4 and len(deposits["ids"]) == 3


def test_gemini_lists_complete_and_pending_transfers_only(sim: RunningSim, registry: VenueRegistry) -> None:
    """docs: List Past Transfers shows no cancelled advances or returned transfers."""
    adapter = registry.get("gemini")
    key = sim.create_key("gemini", ["read"], history=EMPTY)
    sim.control("POST", f"gemini/keys/{key['api_key']}/withdrawals", {"withdrawals": [
        {"asset": "BTC", "amount": "0.1", "status": "ok"}, {"asset": "BTC", "amount": "0.2", "status": "pending"},
        {"asset": "BTC", "amount": "0.3", "status": "cancelled"}]})
    records, _ = drain(adapter, creds_of(key), "withdrawals")
    assert {r.amount: r.status for r in records} == {Decimal("0.1"): TxStatus.COMPLETED,
                                                     Decimal("0.2"): TxStatus.PENDING}


def test_bybit_pending_deposit_without_success_time_does_not_fail_the_stream(sim: RunningSim,
                                                                              registry: VenueRegistry) -> None:
    adapter = registry.get("bybit")
    key = sim.create_key("bybit", ["read"], history=EMPTY)
    sim.control("POST", f"bybit/keys/{key['api_key']}/deposits", {"deposits": [
        {"asset": "USDT", "amount": "5", "status": "pending"}]})
    (record,), page = drain(adapter, creds_of(key), "deposits")
    assert record.raw is not None and record.raw["successAt"] == ""  # Bybit has no time for it yet
    assert record.status == TxStatus.PENDING
    assert page.cursor["pending"] <= int(record.occurred_at.timestamp() * 1000)  # read again next run


# -- finding 3: Bybit internal deposits and sub-account keys ----------------------------------------------

def test_bybit_internal_deposits_are_read(sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = registry.get("bybit")
    key = sim.create_key("bybit", ["read"], history=EMPTY)
    sim.control("POST", f"bybit/keys/{key['api_key']}/deposits", {"deposits": [
        {"asset": "USDT", "amount": "250.5", "internal": True}, {"asset": "BTC", "amount": "0.5"}]})
    creds = creds_of(key)
    sim.control("DELETE", "requests")
    internal, _ = drain(adapter, creds, "internal_deposits")
    on_chain, _ = drain(adapter, creds, "deposits")
    assert [(r.asset, r.amount, r.kind) for r in internal] == [("USDT", Decimal("250.5"), "deposit")]
    assert [(r.asset, r.amount) for r in on_chain] == [("BTC", Decimal("0.5"))]
    paths = {e["path"] for e in sim.requests_log("bybit")}
    assert "/v5/asset/deposit/query-internal-record" in paths
    assert "internal_deposits" in adapter.streams


def test_bybit_sub_account_key_is_told_and_its_withdrawals_are_a_gap(sim: RunningSim,
                                                                      registry: VenueRegistry) -> None:
    adapter = registry.get("bybit")
    key = sim.create_key("bybit", ["read"], history={"trades": 0, "deposits": 1, "withdrawals": 1})
    sim.control("POST", f"bybit/keys/{key['api_key']}/sub_account", {"sub": True})
    creds = creds_of(key)
    outcome = onboarding.probe(adapter, creds, "reject")  # type: ignore[arg-type]
    assert outcome.accepted
    assert "sub-account" in outcome.message and "withdrawal" in outcome.message
    sim.control("DELETE", "requests")
    page = adapter.fetch_transactions(creds, "withdrawals", {})
    assert page.done and not page.records
    assert page.notes["coverage_gap"]["reason"] == "venue_limitation"
    assert not [e for e in sim.requests_log("bybit") if e["path"] == "/v5/asset/withdraw/query-record"]
    again = adapter.fetch_transactions(creds, "withdrawals", page.cursor)  # remembered: no query-api either
    assert again.notes["coverage_gap"]["reason"] == "venue_limitation"
    deposits, _ = drain(adapter, creds, "deposits")  # sub-account keys may read deposits
    assert len(deposits) == 1


# -- finding 4: OKX 50120 ------------------------------------------------------------------------------------

def test_okx_50120_is_a_permission_error_naming_the_permission(sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = registry.get("okx")
    key = sim.create_key("okx", ["read"])
    sim.control("POST", f"okx/keys/{key['api_key']}/permissions", {"permissions": []})
    creds = creds_of(key)
    with pytest.raises(VenuePermissionError) as caught:
        adapter.fetch_balances(creds)
    assert caught.value.venue_code == "50120"
    assert "tick Read" in caught.value.message
    outcome = onboarding.probe(adapter, creds, "reject")  # type: ignore[arg-type]
    assert not outcome.accepted and outcome.error_class == "permission"
    assert "Read" in outcome.message and "could not be reached" not in outcome.message
