"""Bybit v5 traps, against the simulator with the real ccxt client.

readOnly decides the scope although a read-only key lists sections; Withdraw fails even a read-only
key; no hidden query-api/account-info calls before balances; spot trades need category=spot; an
"error sign!" answer echoes the API key, which must not reach our messages; stale timestamps are
rejected; history is walked in windows of at most 7 (executions) or 30 days (deposits, withdrawals),
paged by cursor, internal withdrawals included.
"""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import parse_qsl

import pytest

from appliance.errors import VenueAuthError, VenueTransient
from appliance.venues.base import Credentials
from appliance.venues.exchanges.bybit import ASSET_WINDOW_MS, DAY_MS, TRADES_WINDOW_MS, BybitAdapter
from appliance.venues.registry import VenueRegistry
from appliance.venues.scope_policy import decide
from tests.support.sim import RunningSim
from tests.venues.helpers import creds_of, drain

EMPTY = {"trades": 0, "deposits": 0, "withdrawals": 0}




def queries(sim: RunningSim, path: str) -> list[dict[str, str]]:
    return [dict(parse_qsl(r["query"])) for r in sim.requests_log("bybit") if r["path"] == path]


@pytest.fixture
def adapter(registry: VenueRegistry) -> BybitAdapter:
    found = registry.get("bybit")
    assert isinstance(found, BybitAdapter)
    return found


def test_read_only_flag_decides_although_sections_are_listed(sim: RunningSim, adapter: BybitAdapter) -> None:
    key = sim.create_key("bybit", ["read"], history=EMPTY)
    scope = adapter.probe_scope(creds_of(key))
    assert scope.evidence["readOnly"] == 1
    assert scope.evidence["permissions"]["Spot"] == ["SpotTrade"]  # readable sections, not write rights
    assert scope.read_only
    assert decide(adapter, scope, "reject").accepted
    assert "apiKey" not in scope.evidence
    assert "secret" not in scope.evidence
    assert key["api_key"] not in repr(scope.as_dict())


@pytest.mark.parametrize(("permission", "expected"), [
    ("trade", (True, False, False)), ("transfer", (False, True, False)), ("withdraw", (False, False, True)),
])
def test_read_write_key_escalates(sim: RunningSim, adapter: BybitAdapter, permission: str,
                                  expected: tuple[bool, bool, bool]) -> None:
    scope = adapter.probe_scope(creds_of(sim.create_key("bybit", ["read", permission], history=EMPTY)))
    assert (scope.trade, scope.transfer, scope.withdraw) == expected
    decision = decide(adapter, scope, "reject")
    assert not decision.accepted
    assert "Read-Only" in decision.message


def test_scope_rules_fail_closed(adapter: BybitAdapter) -> None:
    creds = Credentials("A" * 18, "B" * 36)
    withdraw_read_only = adapter.scope_from_key_info(
        {"readOnly": 1, "permissions": {"Wallet": ["AccountTransfer", "Withdraw"]}}, creds)
    assert withdraw_read_only.withdraw is True
    assert "untick Withdrawal" in decide(adapter, withdraw_read_only, "reject").message
    unknown_section = adapter.scope_from_key_info({"readOnly": 0, "permissions": {"Earn": ["Earn"]}}, creds)
    assert unknown_section.trade is True
    assert unknown_section.escalated
    bare_read_write = adapter.scope_from_key_info({"readOnly": 0, "permissions": {}}, creds)
    assert bare_read_write.escalated
    no_flag = adapter.scope_from_key_info({"permissions": {}}, creds)
    assert no_flag.trade is None
    assert not decide(adapter, no_flag, "reject").accepted
    leaked = adapter.scope_from_key_info({"readOnly": 1, "apiKey": "A" * 18, "note": "key " + "A" * 18}, creds)
    assert "A" * 18 not in repr(leaked.evidence)


def test_guide_says_what_to_leave_unticked(adapter: BybitAdapter) -> None:
    warnings = " ".join(step.text for step in adapter.guide if step.warning)
    assert "Read-Only" in warnings
    assert "Withdrawal" in warnings


def test_balances_make_no_hidden_account_mode_calls(sim: RunningSim, adapter: BybitAdapter) -> None:
    key = sim.create_key("bybit", ["read"], history=EMPTY)
    adapter.markets()
    sim.control("DELETE", "requests")
    balances = adapter.fetch_balances(creds_of(key))
    assert [r["path"] for r in sim.requests_log("bybit")] == [
        "/v5/account/wallet-balance", "/v5/asset/transfer/query-account-coins-balance"]
    assert {b.account for b in balances} == {"unified"}


def test_error_sign_echo_never_reaches_messages(sim: RunningSim, adapter: BybitAdapter) -> None:
    key = sim.create_key("bybit", ["read"], history=EMPTY)
    forged = Credentials(key["api_key"], "x" * 36)
    with pytest.raises(VenueAuthError) as caught:
        adapter.fetch_balances(forged)
    assert caught.value.venue_code == "10004"
    assert key["api_key"] not in str(caught.value)
    assert "x" * 36 not in str(caught.value)


def test_stale_timestamp_rejected(sim: RunningSim, adapter: BybitAdapter) -> None:
    creds = creds_of(sim.create_key("bybit", ["read"], history=EMPTY))
    client = adapter.client(creds)
    client.options["timeDifference"] = 10_000  # older than the 5 s recv window
    with pytest.raises(VenueTransient) as caught:
        adapter.call(client.privateGetV5AccountWalletBalance, {"accountType": "UNIFIED"}, creds=creds)
    assert caught.value.venue_code == "10002"


def test_spot_trades_need_category_spot(sim: RunningSim, adapter: BybitAdapter) -> None:
    key = sim.create_key("bybit", ["read"], history=EMPTY)
    sim.control("POST", f"bybit/keys/{key['api_key']}/trades", {"count": 5})  # within the last hour
    creds = creds_of(key)
    linear = adapter.call(adapter.client(creds).privateGetV5ExecutionList, {"category": "linear"}, creds=creds)
    assert linear["result"]["list"] == []  # what ccxt's default category (linear) would have shown
    sim.control("DELETE", "requests")
    records, _ = drain(adapter, creds, "trades")
    assert len(records) == 5
    assert all(q["category"] == "spot" for q in queries(sim, "/v5/execution/list"))


def test_dense_window_paged_by_cursor_and_resumed(sim: RunningSim, adapter: BybitAdapter) -> None:
    key = sim.create_key("bybit", ["read"], history=EMPTY)
    api_key, creds = key["api_key"], creds_of(key)
    sim.control("POST", f"bybit/keys/{api_key}/trades", {"count": 250})  # all within the last hour
    sim.control("DELETE", "requests")
    records, page = drain(adapter, creds, "trades")
    ids = [r.venue_tx_id for r in records]
    assert len(ids) == len(set(ids)) == 250
    asked = queries(sim, "/v5/execution/list")
    assert all(int(q["endTime"]) - int(q["startTime"]) < TRADES_WINDOW_MS for q in asked)
    starts = sorted(int(q["startTime"]) for q in asked)
    walked = starts[-1] - starts[0]
    assert walked > (adapter.history_limit_days or 0) * DAY_MS - 8 * DAY_MS  # two years back
    assert sum("cursor" in q for q in asked) == 2  # 250 rows at 100 a page in the last window
    # Older trades are beyond the API: a standing gap names the statement export that holds them.
    assert page.notes["coverage_gap"]["reason"] == "history_limit"

    sim.control("POST", f"bybit/keys/{api_key}/trades", {"count": 1})  # executed an hour ago
    sim.control("DELETE", "requests")
    again, _ = drain(adapter, creds, "trades", page.cursor)
    assert len(set(r.venue_tx_id for r in again) - set(ids)) == 1
    assert len(queries(sim, "/v5/execution/list")) == 3  # one day of lookback, three pages


def test_withdrawals_include_internal_transfers(sim: RunningSim, adapter: BybitAdapter) -> None:
    key = sim.create_key("bybit", ["read"], history=EMPTY)
    api_key, creds = key["api_key"], creds_of(key)
    sim.control("POST", f"bybit/keys/{api_key}/withdrawals", {"withdrawals": [
        {"asset": "USDT", "amount": "12345678.12345678", "network": "INTERNAL"},
        {"asset": "BTC", "amount": "0.00000001", "network": "BTC", "fee": "0.0002"}]})
    client = adapter.client(creds)
    assert len(client.fetch_withdrawals()) == 1  # Bybit's default withdrawType=0: on-chain only
    sim.control("DELETE", "requests")
    records, _ = drain(adapter, creds, "withdrawals")
    assert sorted(r.amount for r in records) == [Decimal("0.00000001"), Decimal("12345678.12345678")]
    asked = queries(sim, "/v5/asset/withdraw/query-record")
    assert all(q["withdrawType"] == "2" and int(q["endTime"]) - int(q["startTime"]) < ASSET_WINDOW_MS
               for q in asked)
    btc = next(r for r in records if r.asset == "BTC")
    assert btc.fee_amount == Decimal("0.0002")
    assert btc.fee_asset == "BTC"
