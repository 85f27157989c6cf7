"""Kraken traps, with real ccxt against the simulator: ccxt maps ``EAPI:Invalid signature`` to a plain
ExchangeError, nonces must rise per key across fresh clients, deposits and withdrawals come from the
ledger (Deposit/WithdrawStatus need permissions we refuse), and pages are pinned while a run walks them.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import ccxt
import pytest

from appliance.errors import EgressRefused, VenueAuthError, VenueTransient
from appliance.venues.exchanges.kraken import KrakenAdapter
from appliance.venues.registry import VenueRegistry
from appliance.venues.scope_policy import decide
from tests.support.sim import RunningSim
from tests.venues.helpers import creds_of, drain

VENUE = "kraken"


def adapter_of(registry: VenueRegistry) -> KrakenAdapter:
    adapter = registry.get(VENUE)
    assert isinstance(adapter, KrakenAdapter)
    return adapter



def sim_key(sim: RunningSim, key: dict[str, Any]) -> Any:
    return sim.app.state.venues[VENUE].keys[key["api_key"]]


def raw_client(sim: RunningSim, key: dict[str, Any]) -> Any:
    """Plain ccxt straight at the simulator (no egress allowlist), to see what the venue itself enforces.
    Kraken signs only the path, so pointing ccxt at the simulator does not change the signature."""
    client = ccxt.kraken({"apiKey": key["api_key"], "secret": key["api_secret"], "enableRateLimit": False})
    client.urls["api"] = {"public": sim.base_url(VENUE), "private": sim.base_url(VENUE)}
    return client


def private_calls(sim: RunningSim) -> list[str]:
    return [e["path"] for e in sim.requests_log(VENUE) if e["path"].startswith("/0/private/")]


def test_invalid_signature_is_authentication_although_ccxt_says_exchange_error(
        sim: RunningSim, registry: VenueRegistry) -> None:
    key, other = sim.create_key(VENUE), sim.create_key(VENUE)
    forged = {"api_key": key["api_key"], "api_secret": other["api_secret"]}
    with pytest.raises(ccxt.ExchangeError) as raw:
        raw_client(sim, forged).privatePostGetApiKeyInfo()
    assert not isinstance(raw.value, ccxt.AuthenticationError)
    assert "EAPI:Invalid signature" in str(raw.value)
    with pytest.raises(VenueAuthError) as caught:
        adapter_of(registry).probe_scope(creds_of(forged))
    assert caught.value.venue_code == "EAPI:Invalid signature"
    assert other["api_secret"] not in str(caught.value)


def test_nonces_rise_across_fresh_clients_and_a_stale_nonce_is_refused(
        sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    key = sim.create_key(VENUE)
    creds = creds_of(key)
    for _ in range(5):  # each call builds a new ccxt client; all within a few milliseconds
        adapter.fetch_balances(creds)
    client = adapter.client(creds)
    client.nonce = lambda: sim_key(sim, key).last_nonce  # replay the last nonce the venue saw
    with pytest.raises(VenueTransient) as caught:
        adapter.call(client.privatePostBalanceEx, creds=creds)
    assert caught.value.venue_code == "EAPI:Invalid nonce"


def test_read_only_key_evidence_has_no_key_and_no_account_reference(sim: RunningSim, registry: VenueRegistry) -> None:
    key = sim.create_key(VENUE)
    scope = adapter_of(registry).probe_scope(creds_of(key))
    assert scope.read_only
    assert set(scope.evidence["permissions"]) == {"query-funds", "query-open-trades", "query-closed-trades",
                                                  "query-ledger"}
    assert "apiKey" not in scope.evidence
    assert "iban" not in scope.evidence
    assert key["api_key"] not in repr(scope.as_dict())
    assert key["api_secret"] not in repr(scope.as_dict())


@pytest.mark.parametrize(("extra", "field"), [
    ("withdraw-funds", "withdraw"), ("deposit-funds", "transfer"), ("modify-trades", "trade"),
    ("query-staking-fancy", "transfer"), ("withdraw-anything", "withdraw"),
])
def test_permission_allowlist_fails_closed(sim: RunningSim, registry: VenueRegistry, extra: str, field: str) -> None:
    adapter = adapter_of(registry)
    key = sim.create_key(VENUE)
    sim_key(sim, key).extra["permissions"] = [extra]
    scope = adapter.probe_scope(creds_of(key))
    assert getattr(scope, field) is True
    decision = decide(adapter, scope, "accept_unverified")
    assert not decision.accepted
    assert extra in decision.message
    assert "Withdraw" in decision.message


def test_krakens_read_only_recipe_is_accepted_with_the_ledger_as_a_gap(sim: RunningSim,
                                                                       registry: VenueRegistry) -> None:
    """Finding 5: Kraken's guide for read-only monitoring is Query Funds + Query Open/Closed Orders & Trades
    (docs: API key permissions). That key is accepted; its ledger streams are a standing gap, named at onboarding."""
    adapter = adapter_of(registry)
    key = sim.create_key(VENUE, ["read"], history={"trades": 3, "deposits": 2, "withdrawals": 1})
    sim.control("POST", f"{VENUE}/keys/{key['api_key']}/permission_strings",
                {"permissions": ["query-funds", "query-open-trades", "query-closed-trades"]})
    creds = creds_of(key)
    scope = adapter.probe_scope(creds)
    assert scope.read_only
    decision = decide(adapter, scope, "reject")
    assert decision.accepted and decision.verified
    assert "Query Ledger Entries" in decision.message and "deposits and withdrawals" in decision.message
    trades, _ = drain(adapter, creds, "trades")
    assert len(trades) == 3  # trades are read
    for stream in ("deposits", "withdrawals"):
        page = adapter.fetch_transactions(creds, stream, {})  # the venue refuses Ledgers: a gap, not a failure
        assert page.done and not page.records
        assert page.notes["coverage_gap"]["reason"] == "venue_limitation"
        assert "Query Ledger Entries" in page.notes["coverage_gap"]["detail"]


def test_unlisted_read_only_permissions_are_reported_as_what_they_are(sim: RunningSim,
                                                                     registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    key = sim.create_key(VENUE, ["read"])
    sim.control("POST", f"{VENUE}/keys/{key['api_key']}/permission_strings",
                {"permissions": ["query-funds", "query-open-trades", "query-closed-trades", "query-ledger",
                                 "export-data", "access-websockets"]})
    scope = adapter.probe_scope(creds_of(key))
    assert scope.read_only and not scope.limitations
    assert any(n.startswith("Export Data") and "read-only" in n for n in scope.notes)
    assert any("Access WebSocket API" in n for n in scope.notes)
    assert decide(adapter, scope, "reject").accepted


def test_key_that_cannot_read_is_told_exactly_what_to_add(sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    key = sim.create_key(VENUE, ["read"])
    sim.control("POST", f"{VENUE}/keys/{key['api_key']}/permission_strings", {"permissions": ["query-ledger"]})
    scope = adapter.probe_scope(creds_of(key))
    assert scope.read is False and not scope.escalated
    decision = decide(adapter, scope, "accept_unverified")
    assert not decision.accepted
    assert "Query Funds" in decision.message and "Query Open Orders & Trades" in decision.message


def test_deposit_and_withdraw_status_need_permissions_we_refuse(sim: RunningSim, registry: VenueRegistry) -> None:
    key = sim.create_key(VENUE, ["read"])
    client = raw_client(sim, key)
    for method in (client.privatePostDepositStatus, client.privatePostWithdrawStatus):
        with pytest.raises(ccxt.PermissionDenied):
            method()
    withdrawer = sim.create_key(VENUE, ["read", "withdraw"])
    assert raw_client(sim, withdrawer).privatePostWithdrawStatus()["result"] is not None
    sim.control("DELETE", "requests")
    with pytest.raises(EgressRefused):  # and the adapter's own client may not even ask
        adapter_of(registry).client(creds_of(withdrawer)).privatePostWithdrawStatus()
    assert sim.requests_log(VENUE) == []


def test_funding_comes_from_the_ledger_only_credited_entries(sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    key = sim.create_key(VENUE, history={"trades": 0, "deposits": 0, "withdrawals": 0})
    sim.control("POST", f"{VENUE}/keys/{key['api_key']}/deposits", {"deposits": [
        {"asset": "BTC", "amount": "0.5"}, {"asset": "ETH", "amount": "2", "status": "pending"}]})
    sim.control("POST", f"{VENUE}/keys/{key['api_key']}/withdrawals", {"withdrawals": [
        {"asset": "BTC", "amount": "0.1", "fee": "0.0001"}]})
    sim.control("DELETE", "requests")
    deposits = adapter.fetch_transactions(creds_of(key), "deposits", {})
    withdrawals = adapter.fetch_transactions(creds_of(key), "withdrawals", {})
    assert [(r.asset, r.amount) for r in deposits.records] == [("BTC", Decimal("0.5"))]  # pending: not booked yet
    assert [(r.asset, r.amount, r.fee_amount) for r in withdrawals.records] == [
        ("BTC", Decimal("0.1"), Decimal("0.0001"))]
    assert deposits.records[0].raw
    assert deposits.records[0].raw["amount"] == "0.5000000000"
    assert all(r.venue_tx_id.startswith("L") for r in deposits.records + withdrawals.records)
    assert set(private_calls(sim)) == {"/0/private/Ledgers"}


def test_pages_are_pinned_while_history_grows_mid_run(sim: RunningSim, registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    key = sim.create_key(VENUE, history={"trades": 120, "deposits": 0, "withdrawals": 0})
    creds = creds_of(key)
    sim.control("DELETE", "requests")
    first = adapter.fetch_transactions(creds, "trades", {})
    assert len(first.records) == 50
    assert not first.done
    sim.control("POST", f"{VENUE}/keys/{key['api_key']}/trades", {"count": 3})  # newer than the pinned end
    pages = [first]
    while not pages[-1].done:
        pages.append(adapter.fetch_transactions(creds, "trades", pages[-1].cursor))
    ids = [r.venue_tx_id for p in pages for r in p.records]
    assert [len(p.records) for p in pages] == [50, 50, 20]
    assert all(json.loads(json.dumps(p.cursor)) == p.cursor for p in pages)  # stored as JSON between pages
    assert len(set(ids)) == 120
    bodies = [e["body"] for e in sim.requests_log(VENUE) if e["path"] == "/0/private/TradesHistory"]
    assert "end=" not in bodies[0]
    assert all(f"end={pages[0].cursor['end']}" in b for b in bodies[1:])
    later = adapter.fetch_transactions(creds, "trades", pages[-1].cursor)
    assert later.done
    assert len(later.records) == 3
    assert not {r.venue_tx_id for r in later.records} & set(ids)


def test_earn_balances_keep_their_wallet(sim: RunningSim, registry: VenueRegistry) -> None:
    key = sim.create_key(VENUE, history={"trades": 0, "deposits": 0, "withdrawals": 0})
    sim.control("POST", f"{VENUE}/keys/{key['api_key']}/balances", {"XBT.F": "0.25", "USDT": "0"})
    balances = {(b.asset, b.account): b.amount for b in adapter_of(registry).fetch_balances(creds_of(key))}
    assert balances[("BTC", "earn")] == Decimal("0.25")
    assert ("USDT", "") not in balances


def test_guide_and_instructions_say_what_to_untick(registry: VenueRegistry) -> None:
    adapter = adapter_of(registry)
    warnings = " ".join(step.text for step in adapter.guide if step.warning)
    for word in ("Deposit", "Withdraw", "Create & modify orders", "Cancel & close orders", "Earn"):
        assert word in warnings
    assert all(f.name in ("api_key", "api_secret") for f in adapter.credential_fields)


def test_withdraw_with_its_key_parameter_is_refused_inside_the_box(sim: RunningSim, registry: VenueRegistry) -> None:
    """ccxt refuses kraken.withdraw() without a withdrawal-key name before any request; with one, our
    egress refuses it. Either way nothing reaches the venue."""
    key = sim.create_key(VENUE, ["read", "withdraw"])
    client = adapter_of(registry).client(creds_of(key))
    sim.control("DELETE", "requests")
    with pytest.raises(ccxt.ExchangeError, match="'key' parameter"):
        client.withdraw("BTC", 1, "bc1qexampleaddressxxxxxxxxxxxxxxxxxxxxxxxx")
    with pytest.raises(EgressRefused, match="/0/private/Withdraw"):
        client.withdraw("BTC", 1, "bc1qexampleaddressxxxxxxxxxxxxxxxxxxxxxxxx", {"key": "my cold wallet"})
    assert sim.requests_log(VENUE) == []
