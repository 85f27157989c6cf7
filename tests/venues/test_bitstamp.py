"""Bitstamp traps, against the simulator with the real ccxt client (and hand-signed requests for the verifier)."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from decimal import Decimal
from typing import Any

import pytest
import requests

from appliance.errors import EgressRefused, VenueAuthError
from appliance.sim.core import now_ms
from appliance.venues.base import Kind
from appliance.venues.registry import VenueRegistry
from appliance.venues.scope_policy import decide
from tests.support.sim import RunningSim
from tests.venues.helpers import creds_of, drain
from tests.venues.test_contract import account_of

EMPTY = {"trades": 0, "deposits": 0, "withdrawals": 0}
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def bitstamp(registry: VenueRegistry) -> Any:
    return registry.get("bitstamp")


def signed_post(sim: RunningSim, key: dict[str, Any], path: str, *, host: str = "www.bitstamp.net",
                nonce: str | None = None, timestamp: int | None = None, body: str = "foo=bar") -> requests.Response:
    """A request signed by hand as Bitstamp documents it (VENUES.md Appendix A.9)."""
    nonce = nonce or str(uuid.uuid4())
    stamp = str(timestamp or now_ms())
    x_auth = "BITSTAMP " + key["api_key"]
    message = x_auth + "POST" + host + path + FORM + nonce + stamp + "v2" + body
    signature = hmac.new(key["api_secret"].encode(), message.encode(), hashlib.sha256).hexdigest()
    headers = {"X-Auth": x_auth, "X-Auth-Signature": signature, "X-Auth-Nonce": nonce, "X-Auth-Timestamp": stamp,
               "X-Auth-Version": "v2", "Content-Type": FORM}
    return requests.post(sim.base_url("bitstamp") + path, data=body, headers=headers, timeout=5)


def test_signature_covers_the_production_host(sim: RunningSim) -> None:
    key = sim.create_key("bitstamp", ["read"])
    assert signed_post(sim, key, "/api/v2/account_balances/").status_code == 200
    loopback = sim.base_url("bitstamp").removeprefix("http://")
    refused = signed_post(sim, key, "/api/v2/account_balances/", host=loopback)
    assert refused.status_code == 403
    assert refused.json()["code"] == "API0005"


def test_nonce_single_use_and_timestamp_window(sim: RunningSim) -> None:
    key = sim.create_key("bitstamp", ["read"])
    nonce = str(uuid.uuid4())
    assert signed_post(sim, key, "/api/v2/account_balances/", nonce=nonce).status_code == 200
    assert signed_post(sim, key, "/api/v2/account_balances/", nonce=nonce).json()["code"] == "API0004"
    stale = signed_post(sim, key, "/api/v2/account_balances/", timestamp=now_ms() - 200_000)
    assert stale.json()["code"] == "API0017"


def test_read_only_key_is_unverified_not_read_only(sim: RunningSim, bitstamp: Any) -> None:
    key = sim.create_key("bitstamp", ["read"])
    scope = bitstamp.probe_scope(creds_of(key))
    assert (scope.read, scope.trade, scope.transfer, scope.withdraw, scope.verified) == (True, False, None, None, False)
    assert scope.evidence == {"account_balances": "ok", "cancel_order_probe": "No permission found"}
    assert not decide(bitstamp, scope, "reject").accepted
    accepted = decide(bitstamp, scope, "accept_unverified")
    assert accepted.accepted
    assert not accepted.verified
    assert "transfer" in accepted.message
    assert "withdraw" in accepted.message


def test_trading_key_detected_by_the_cancel_probe(sim: RunningSim, bitstamp: Any) -> None:
    key = sim.create_key("bitstamp", ["read", "trade"])
    sim.control("DELETE", "requests")
    scope = bitstamp.probe_scope(creds_of(key))
    assert scope.trade is True
    assert "Order not found." in scope.evidence["cancel_order_probe"]
    decision = decide(bitstamp, scope, "accept_unverified")
    assert not decision.accepted
    assert decision.message == bitstamp.regenerate_instructions(scope)
    probes = [e["body"] for e in sim.requests_log("bitstamp") if e["path"] == "/api/v2/cancel_order/"]
    assert probes == ["id=1"]


def test_key_without_read_permission(sim: RunningSim, bitstamp: Any) -> None:
    key = sim.create_key("bitstamp", ["trade"])
    scope = bitstamp.probe_scope(creds_of(key))
    assert scope.read is False
    assert scope.trade is True


def test_revoke_all_api_keys_never_leaves_the_box(sim: RunningSim, bitstamp: Any) -> None:
    key = sim.create_key("bitstamp", ["read"])
    client = bitstamp.client(creds_of(key))
    sim.control("DELETE", "requests")
    with pytest.raises(EgressRefused):
        client.privatePostRevokeAllApiKeys()
    assert sim.requests_log("bitstamp") == []
    assert not any("revoke" in rule.pattern for rule in bitstamp.read_endpoints)


def test_revoked_key_api0001_is_authentication(sim: RunningSim, bitstamp: Any) -> None:
    key = sim.create_key("bitstamp", ["read"])
    sim.control("POST", f"bitstamp/keys/{key['api_key']}/revoke")
    with pytest.raises(VenueAuthError) as caught:
        bitstamp.probe_scope(creds_of(key))
    assert caught.value.venue_code == "API0001"


def test_ledger_pages_resume_from_since_id(sim: RunningSim, bitstamp: Any) -> None:
    key = sim.create_key("bitstamp", ["read"], history={"trades": 1200, "deposits": 500, "withdrawals": 300})
    creds = creds_of(key)
    first = bitstamp.fetch_transactions(creds, "ledger", {})
    assert len(first.records) == 1000
    assert not first.done
    records, last = drain(bitstamp, creds, "ledger", first.cursor)
    cursor = last.cursor
    ids = [r.venue_tx_id for r in [*first.records, *records]]
    assert len(ids) == len(set(ids)) == 2000  # the inclusive since_id row is not returned twice
    assert drain(bitstamp, creds, "ledger", cursor)[0] == []
    sim.control("POST", f"bitstamp/keys/{key['api_key']}/deposits", {"count": 2})
    assert len(drain(bitstamp, creds, "ledger", cursor)[0]) == 2
    kinds = {r.kind for r in [*first.records, *records]}
    assert kinds == {Kind.BUY, Kind.SELL, Kind.DEPOSIT, Kind.WITHDRAWAL}


def test_ledger_rows_parse_exactly(sim: RunningSim, bitstamp: Any) -> None:
    key = sim.create_key("bitstamp", ["read"], history=EMPTY)
    sim.control("POST", f"bitstamp/keys/{key['api_key']}/trades", {"trades": [
        {"base": "ETH", "quote": "BTC", "side": "sell", "amount": "12345678.12345678", "price": "0.0521",
         "fee": "0.00000001"}]})
    sim.control("POST", f"bitstamp/keys/{key['api_key']}/withdrawals", {"withdrawals": [
        {"asset": "BTC", "amount": "0.00000001", "fee": "0.0001"}]})
    records, _ = drain(bitstamp, creds_of(key), "ledger")
    trade, withdrawal = sorted(records, key=lambda r: r.kind)
    assert (trade.kind, trade.asset, trade.amount, trade.market) == (
        Kind.SELL, "ETH", Decimal("12345678.12345678"), "ETH/BTC")
    assert (trade.price, trade.quote_amount, trade.fee_asset, trade.fee_amount) == (
        Decimal("0.0521"), Decimal("12345678.12345678") * Decimal("0.0521"), "BTC", Decimal("0.00000001"))
    assert (withdrawal.kind, withdrawal.asset, withdrawal.amount, withdrawal.fee_amount) == (
        Kind.WITHDRAWAL, "BTC", Decimal("0.00000001"), Decimal("0.0001"))
    account = account_of(sim, "bitstamp", key["api_key"])
    assert {r.venue_tx_id for r in records} == sim.app.state.venues["bitstamp"].stream_ids(account, "ledger")


def test_other_user_transaction_types(bitstamp: Any) -> None:
    rows = [
        {"id": 7, "datetime": "2026-01-02 03:04:05.678000", "type": "14", "fee": "0", "usd": 0.0, "eth": "-1.5"},
        {"id": 8, "datetime": "2026-01-02 03:04:06", "type": "27", "fee": "0", "sol": "0.00000001"},
        {"id": 9, "datetime": "2026-01-02 03:04:07", "type": "99", "fee": "0", "eur": "-3.10"},
    ]
    (transfer,), (reward,), (other,) = (bitstamp._records(row) for row in rows)
    assert (transfer.kind, transfer.asset, transfer.amount) == (Kind.TRANSFER_OUT, "ETH", Decimal("1.5"))
    assert (reward.kind, reward.amount, reward.occurred_at.tzinfo is not None) == (Kind.REWARD, Decimal("1E-8"), True)
    assert (other.kind, other.amount) == (Kind.OTHER, Decimal("-3.10"))


def test_guide_says_what_to_untick() -> None:
    from appliance.venues.exchanges.bitstamp import BitstampAdapter

    warnings = " ".join(step.text for step in BitstampAdapter.guide if step.warning)
    for item in ("Buy", "Sell", "Cancel order", "Withdrawal", "Transfer"):
        assert item in warnings
    assert BitstampAdapter.can_probe_scope is False
