"""OKX traps, against the simulator with the real ccxt client."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import ccxt
import pytest

from appliance.errors import VenueAuthError, VenueTransient
from appliance.sim.core import now_ms
from appliance.venues.base import Credentials, Kind
from appliance.venues.registry import VenueRegistry
from appliance.venues.scope_policy import decide
from tests.support.sim import RunningSim
from tests.venues.helpers import creds_of, drain
from tests.venues.test_contract import account_of

DAY_MS = 86_400_000
EMPTY = {"trades": 0, "deposits": 0, "withdrawals": 0}


@pytest.fixture
def okx(registry: VenueRegistry) -> Any:
    return registry.get("okx")


def test_deleted_key_50119_is_authentication_although_ccxt_says_exchange_error(
        sim: RunningSim, okx: Any) -> None:
    key = sim.create_key("okx", ["read"])
    creds = creds_of(key)
    sim.control("POST", f"okx/keys/{key['api_key']}/revoke")
    with pytest.raises(ccxt.ExchangeError) as raw:
        okx.client(creds).privateGetAccountConfig()
    assert not isinstance(raw.value, ccxt.AuthenticationError)
    assert '"50119"' in str(raw.value)
    with pytest.raises(VenueAuthError) as caught:
        okx.probe_scope(creds)
    assert caught.value.venue_code == "50119"


def test_deleted_and_frozen_key_classify_as_authentication(okx: Any) -> None:
    for code in ("50119", "50100"):
        body = json.dumps({"msg": "API key problem", "code": code, "data": []})
        error = okx.classify(ccxt.ExchangeError("okx " + body), None)
        assert isinstance(error, VenueAuthError), code


def test_wrong_passphrase_is_authentication(sim: RunningSim, okx: Any) -> None:
    key = sim.create_key("okx", ["read"])
    with pytest.raises(VenueAuthError) as caught:
        okx.fetch_balances(Credentials(key["api_key"], key["api_secret"], "not-the-passphrase"))
    assert caught.value.venue_code == "50105"
    assert key["api_secret"] not in str(caught.value)


def test_stale_timestamp_rejected(sim: RunningSim, okx: Any) -> None:
    key = sim.create_key("okx", ["read"])
    creds = creds_of(key)
    client = okx.client(creds)
    client.options["timeDifference"] = 60_000  # ccxt signs a timestamp one minute in the past
    with pytest.raises(VenueTransient) as caught:
        okx.call(client.privateGetAccountBalance, creds=creds)
    assert caught.value.venue_code == "50102"


@pytest.mark.parametrize(("permissions", "perm", "granted"), [
    (["read", "trade"], "read_only,trade", ["trade", "transfer"]),
    (["read", "transfer"], "read_only,trade", ["trade", "transfer"]),
    (["read", "withdraw"], "read_only,withdraw", ["withdraw"]),
])
def test_scope_from_perm(sim: RunningSim, okx: Any, permissions: list[str], perm: str, granted: list[str]) -> None:
    key = sim.create_key("okx", permissions)
    scope = okx.probe_scope(creds_of(key))
    assert scope.verified
    assert scope.evidence["perm"] == perm
    assert scope.granted() == granted
    decision = decide(okx, scope, "reject")
    assert not decision.accepted
    assert "Trade and Withdraw" in decision.message
    assert perm in decision.message


def test_scope_evidence_holds_no_secret(sim: RunningSim, okx: Any) -> None:
    key = sim.create_key("okx", ["read"])
    scope = okx.probe_scope(creds_of(key))
    text = repr(scope.as_dict())
    for secret in (key["api_key"], key["api_secret"], key["passphrase"]):
        assert secret not in text


def test_markets_are_public_only(sim: RunningSim, okx: Any) -> None:
    sim.control("DELETE", "requests")
    okx.new_client(None).load_markets()  # the shared markets may already be cached: load them anew
    log = sim.requests_log("okx")
    assert [(e["method"], e["path"], e["query"]) for e in log] == [
        ("GET", "/api/v5/public/instruments", "instType=SPOT")]
    assert not any(name.lower().startswith("ok-access") for name in log[0]["headers"])


def test_balances_read_trading_and_funding(sim: RunningSim, okx: Any) -> None:
    key = sim.create_key("okx", ["read"], history=EMPTY)
    sim.app.state.venues["okx"].keys[key["api_key"]].extra["funding"] = {"USDC": Decimal("0.00000001"),
                                                                         "BTC": Decimal(0)}
    balances = {(b.account, b.asset): b.amount for b in okx.fetch_balances(creds_of(key))}
    assert balances == {("trading", "BTC"): Decimal("0.5"), ("trading", "ETH"): Decimal("4.25"),
                        ("trading", "USDT"): Decimal("1520.75"), ("funding", "USDC"): Decimal("0.00000001")}


def test_fills_page_boundary_and_incremental(sim: RunningSim, okx: Any) -> None:
    key = sim.create_key("okx", ["read"], history={"trades": 200, "deposits": 0, "withdrawals": 0})
    creds = creds_of(key)
    first = okx.fetch_transactions(creds, "trades", {})
    assert len(first.records) == 100
    assert not first.done
    assert first.complete_until is None
    records, last = drain(okx, creds, "trades", first.cursor)
    cursor = last.cursor
    assert len(records) == 100
    assert {r.venue_tx_id for r in records}.isdisjoint(r.venue_tx_id for r in first.records)
    assert drain(okx, creds, "trades", cursor)[0] == []  # nothing new: the boundary stops the walk at once
    sim.control("POST", f"okx/keys/{key['api_key']}/trades", {"count": 3})
    new, _ = drain(okx, creds, "trades", cursor)
    assert len(new) == 3
    sample = new[0]
    assert sample.kind in (Kind.BUY, Kind.SELL)
    assert sample.quote_amount == sample.amount * sample.price
    assert sample.fee_amount == Decimal("0.001")  # OKX reports it as -0.001


def test_fills_older_than_three_months_are_not_served(sim: RunningSim, okx: Any) -> None:
    key = sim.create_key("okx", ["read"], history=EMPTY)
    old = now_ms() - 100 * DAY_MS
    sim.control("POST", f"okx/keys/{key['api_key']}/trades", {"trades": [
        {"base": "BTC", "quote": "USDT", "side": "buy", "amount": "1", "price": "10", "timestamp": old},
        {"base": "BTC", "quote": "USDT", "side": "sell", "amount": "1", "price": "11"}]})
    records, _ = drain(okx, creds_of(key), "trades")
    assert [r.kind for r in records] == [Kind.SELL]
    assert okx.history_limit_days == 90


def test_deposits_split_inside_one_millisecond_lose_nothing(sim: RunningSim, okx: Any) -> None:
    key = sim.create_key("okx", ["read"], history=EMPTY)
    same = now_ms() - DAY_MS
    spread = [{"asset": "BTC", "amount": "1", "timestamp": same + 1000 * (i + 1)} for i in range(90)]
    clash = [{"asset": "ETH", "amount": "2", "timestamp": same} for _ in range(30)]
    sim.control("POST", f"okx/keys/{key['api_key']}/deposits", {"deposits": spread + clash})
    records, last = drain(okx, creds_of(key), "deposits")
    cursor = last.cursor
    ids = [r.venue_tx_id for r in records]
    assert len(ids) == len(set(ids)) == 120
    assert set(ids) == sim.app.state.venues["okx"].stream_ids(account_of(sim, "okx", key["api_key"]), "deposits")
    assert cursor == {"newest": same + 90_000}


def test_withdrawal_fee_and_kind(sim: RunningSim, okx: Any) -> None:
    key = sim.create_key("okx", ["read"], history=EMPTY)
    sim.control("POST", f"okx/keys/{key['api_key']}/withdrawals", {"withdrawals": [
        {"asset": "USDT", "amount": "12345678.12345678", "fee": "0.00000001"}]})
    (record,), _ = drain(okx, creds_of(key), "withdrawals")
    assert record.kind == Kind.WITHDRAWAL
    assert record.amount == Decimal("12345678.12345678")
    assert (record.fee_asset, record.fee_amount) == ("USDT", Decimal("0.00000001"))


def test_guide_says_what_to_untick() -> None:
    from appliance.venues.exchanges.okx import OkxAdapter

    warnings = [step.text for step in OkxAdapter.guide if step.warning]
    assert any("Trade" in text and "Withdraw" in text and "unticked" in text for text in warnings)
    assert [f.name for f in OkxAdapter.credential_fields] == ["api_key", "api_secret", "passphrase"]
