"""Binance traps, against the simulator with the real ccxt client.

-2015 after an earlier success (ccxt: DDoSProtection) is still an authentication error; the scope comes
from apiRestrictions, never from the account-level canTrade; unknown or missing flags fail closed; the
timestamp window is enforced; trades are asked per derived market by fromId and the markets are recorded;
deposit and withdrawal history is walked in windows of at most 90 days.
"""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from urllib.parse import parse_qsl

import ccxt
import pytest

from appliance.errors import VenueAuthError, VenueBadData, VenueTransient
from appliance.venues.base import Credentials
from appliance.venues.exchanges.binance import HISTORY_WINDOW_MS, BinanceAdapter
from appliance.venues.registry import VenueRegistry
from appliance.venues.scope_policy import decide
from tests.support.sim import RunningSim
from tests.venues.helpers import creds_of, drain, pages

EMPTY = {"trades": 0, "deposits": 0, "withdrawals": 0}




def queries(sim: RunningSim, path: str) -> list[dict[str, str]]:
    return [dict(parse_qsl(r["query"])) for r in sim.requests_log("binance") if r["path"] == path]


@pytest.fixture
def adapter(registry: VenueRegistry) -> BinanceAdapter:
    found = registry.get("binance")
    assert isinstance(found, BinanceAdapter)
    return found


def test_revoked_key_after_success_is_authentication_not_rate_limit(sim: RunningSim, adapter: BinanceAdapter) -> None:
    key = sim.create_key("binance", ["read"], history=EMPTY)
    creds = creds_of(key)
    client = adapter.client(creds)
    adapter.call(client.privateGetAccount, creds=creds)  # ccxt now believes this key authenticated
    sim.control("POST", f"binance/keys/{key['api_key']}/revoke")
    with pytest.raises(ccxt.DDoSProtection):  # the trap: ccxt alone would call it a temporary ban
        client.privateGetAccount()
    with pytest.raises(VenueAuthError) as caught:
        adapter.call(client.privateGetAccount, creds=creds)
    assert caught.value.venue_code == "-2015"
    assert key["api_key"] not in str(caught.value)
    assert key["api_secret"] not in str(caught.value)


def test_malformed_key_is_authentication_error(adapter: BinanceAdapter) -> None:
    with pytest.raises(VenueAuthError) as caught:
        adapter.fetch_balances(Credentials("not-a-binance-key", "x" * 64))
    assert caught.value.venue_code == "-2014"


@pytest.mark.parametrize("skew_ms", [120_000, -5_000])
def test_timestamp_outside_window_rejected(sim: RunningSim, adapter: BinanceAdapter, skew_ms: int) -> None:
    key = sim.create_key("binance", ["read"], history=EMPTY)
    creds = creds_of(key)
    client = adapter.client(creds)
    client.options["timeDifference"] = skew_ms  # ccxt signs timestamp = now - timeDifference
    with pytest.raises(VenueTransient) as caught:
        adapter.call(client.privateGetAccount, creds=creds)
    assert caught.value.venue_code == "-1021"


def test_scope_from_api_restrictions_not_account_flags(sim: RunningSim, adapter: BinanceAdapter) -> None:
    key = sim.create_key("binance", ["read"], history=EMPTY)
    creds = creds_of(key)
    account = adapter.call(adapter.client(creds).privateGetAccount, creds=creds)
    assert account["canTrade"] is True
    assert account["canWithdraw"] is True
    scope = adapter.probe_scope(creds)
    assert scope.read_only
    assert scope.evidence["enableReading"] is True
    assert key["api_key"] not in repr(scope.as_dict())
    assert key["api_secret"] not in repr(scope.as_dict())


@pytest.mark.parametrize(("permission", "label"), [
    ("trade", "Enable Spot & Margin Trading"), ("transfer", "Permits Universal Transfer"),
    ("withdraw", "Enable Withdrawals"),
])
def test_dangerous_flags_named_in_instructions(sim: RunningSim, adapter: BinanceAdapter, permission: str,
                                               label: str) -> None:
    scope = adapter.probe_scope(creds_of(sim.create_key("binance", ["read", permission], history=EMPTY)))
    assert getattr(scope, permission) is True
    decision = decide(adapter, scope, "reject")
    assert not decision.accepted
    assert label in decision.message


def test_unknown_or_missing_flags_fail_closed(adapter: BinanceAdapter) -> None:
    creds = Credentials("k" * 64, "s" * 64)
    base = {"enableReading": True, "enableSpotAndMarginTrading": False, "enableMargin": False,
            "enableFutures": False, "enableInternalTransfer": False, "permitsUniversalTransfer": False,
            "enableWithdrawals": False}
    assert adapter.scope_from_restrictions(base, creds).read_only
    unknown = adapter.scope_from_restrictions({**base, "enableCopyTrading": True}, creds)
    assert unknown.trade is True
    assert not decide(adapter, unknown, "reject").accepted
    assert "enableCopyTrading" in unknown.notes[0]
    missing = adapter.scope_from_restrictions({k: v for k, v in base.items() if k != "enableWithdrawals"}, creds)
    assert missing.withdraw is None
    assert not decide(adapter, missing, "reject").accepted


def test_guide_says_what_to_leave_unticked(adapter: BinanceAdapter) -> None:
    warnings = " ".join(step.text for step in adapter.guide if step.warning)
    for label in ("Enable Spot & Margin Trading", "Enable Futures", "Enable Withdrawals",
                  "Enable Internal Transfer", "Permits Universal Transfer"):
        assert label in warnings


def test_markets_derived_from_holdings_and_recorded(sim: RunningSim, adapter: BinanceAdapter) -> None:
    key = sim.create_key("binance", ["read"], history=EMPTY)
    api_key, creds = key["api_key"], creds_of(key)
    account = sim.app.state.venues["binance"].keys[api_key].account
    account.balances.clear()
    sim.control("POST", f"binance/keys/{api_key}/balances", {"BTC": "1", "USDT": "100"})
    sim.control("POST", f"binance/keys/{api_key}/trades", {"trades": [
        {"base": "BTC", "quote": "USDT", "side": "buy", "amount": "0.5", "price": "40000"},
        {"base": "SOL", "quote": "BTC", "side": "buy", "amount": "3", "price": "0.002"}]})
    sim.control("POST", f"binance/keys/{api_key}/balances", {"SOL": "0"})  # sold again: SOL not held
    records, page = drain(adapter, creds, "trades")
    assert page.notes["markets"] == ["BTC/USDT"]  # SOL never held nor moved: SOL/BTC not asked
    assert {r.market for r in records} == {"BTC/USDT"}
    mine = [dict(parse_qsl(r["query"])) for r in sim.requests_log("binance")
            if r["path"] == "/api/v3/myTrades"
            and {k.lower(): v for k, v in r["headers"].items()}.get("x-mbx-apikey") == api_key]
    assert {q["symbol"] for q in mine} == {"BTCUSDT"}  # this key's queries (other tests share the simulator)

    sim.control("POST", f"binance/keys/{api_key}/deposits", {"deposits": [{"asset": "SOL", "amount": "2"}]})
    records, page = drain(adapter, creds, "trades", page.cursor)
    assert page.notes["markets"] == ["BTC/USDT", "SOL/BTC", "SOL/USDT"]
    assert page.notes["market_list"] == "derived"  # the sync keeps an unverified_markets gap for it
    assert {r.market for r in records} == {"SOL/BTC"}  # BTC/USDT resumed after its last id: nothing new
    trade = records[0]
    assert trade.asset == "SOL"
    assert trade.quote_asset == "BTC"
    assert trade.amount == Decimal("3")
    assert trade.quote_amount == Decimal("0.006")
    assert trade.fee_asset == "BTC"

    sim.control("POST", f"binance/keys/{api_key}/balances", {"SOL": "0", "BTC": "0"})
    _, page = drain(adapter, creds, "trades", page.cursor)
    assert "SOL/BTC" in page.notes["markets"]  # a market with history stays covered


def test_trades_page_by_from_id(sim: RunningSim, adapter: BinanceAdapter) -> None:
    key = sim.create_key("binance", ["read"], history=EMPTY)
    api_key, creds = key["api_key"], creds_of(key)
    sim.control("POST", f"binance/keys/{api_key}/trades", {"trades": [
        {"base": "BTC", "quote": "USDT", "side": "sell", "amount": "0.001", "price": "50000"}] * 1000})
    sim.control("DELETE", "requests")
    records, page = drain(adapter, creds, "trades")
    btc = [q for q in queries(sim, "/api/v3/myTrades") if q["symbol"] == "BTCUSDT"]
    ids = sorted(int(r.venue_tx_id) for r in records)
    assert len(ids) == len(set(ids)) == 1000
    assert [q["fromId"] for q in btc] == ["0", str(ids[-1] + 1)]  # a full page, then the empty remainder
    assert all(q["limit"] == "1000" and "startTime" not in q for q in btc)

    sim.control("POST", f"binance/keys/{api_key}/trades", {"count": 1, "trades": [
        {"base": "BTC", "quote": "USDT", "side": "buy", "amount": "0.002", "price": "50000"}]})
    sim.control("DELETE", "requests")
    records, _ = drain(adapter, creds, "trades", page.cursor)
    assert [q["fromId"] for q in queries(sim, "/api/v3/myTrades") if q["symbol"] == "BTCUSDT"] == [str(ids[-1] + 1)]
    assert len(records) == 1
    assert records[0].kind == "buy"


def test_history_walks_90_day_windows_with_a_day_of_overlap(sim: RunningSim, adapter: BinanceAdapter) -> None:
    key = sim.create_key("binance", ["read"], history={"trades": 0, "deposits": 3, "withdrawals": 2})
    api_key, creds = key["api_key"], creds_of(key)
    sim.control("DELETE", "requests")
    walked = pages(adapter, creds, "deposits")
    deposits, page = [r for p in walked for r in p.records], walked[-1]
    # The first run reads every window from Binance's opening to now (concurrently, newest first): no hole.
    asked = sorted(queries(sim, "/sapi/v1/capital/deposit/hisrec"), key=lambda q: int(q["startTime"]))
    assert int(asked[0]["startTime"]) == int(adapter.history_start.timestamp() * 1000)
    assert all(int(q["endTime"]) - int(q["startTime"]) < HISTORY_WINDOW_MS for q in asked)
    assert all(int(b["startTime"]) == int(a["endTime"]) + 1 for a, b in itertools.pairwise(asked))
    assert len(deposits) == 3
    assert page.complete_until is not None
    # Newest first: the first page already covers up to now, and the coverage grows back page by page.
    assert walked[0].complete_until == page.complete_until
    starts = [p.notes["complete_from"] for p in walked]
    assert starts == sorted(starts, reverse=True)
    assert starts[-1] == adapter.history_start.isoformat()
    assert all(p.progress is not None for p in walked[:-1])
    assert all(r.occurred_at.tzinfo is dt.UTC for r in deposits)

    sim.control("POST", f"binance/keys/{api_key}/deposits", {"count": 1})  # indexed an hour in the past
    sim.control("DELETE", "requests")
    again, _ = drain(adapter, creds, "deposits", page.cursor)
    asked = queries(sim, "/sapi/v1/capital/deposit/hisrec")
    assert len(asked) == 1
    assert int(asked[0]["startTime"]) == page.cursor["until"] - 24 * 3600 * 1000
    assert len({r.venue_tx_id for r in again} - {r.venue_tx_id for r in deposits}) == 1

    withdrawals, _ = drain(adapter, creds, "withdrawals")
    truth = sim.app.state.venues["binance"].keys[api_key].account.withdrawals
    assert {r.venue_tx_id for r in withdrawals} == {t.id for t in truth}
    first = next(r for r in withdrawals if r.venue_tx_id == truth[0].id)
    assert first.occurred_at == dt.datetime.fromtimestamp(truth[0].timestamp // 1000, dt.UTC)
    assert first.amount == truth[0].amount
    assert first.fee_asset == first.asset


def test_delisted_market_in_cursor_is_skipped(sim: RunningSim, adapter: BinanceAdapter) -> None:
    creds = creds_of(sim.create_key("binance", ["read"], history=EMPTY))
    cursor = {"assets": ["BTC", "USDT"], "from_ids": {"LUNAUSDT": 7}, "queue": ["LUNAUSDT", "BTCUSDT"],
              "covered": [], "run_started": 1_700_000_000_000}
    sim.control("DELETE", "requests")
    _, page = drain(adapter, creds, "trades", cursor)
    assert [q["symbol"] for q in queries(sim, "/api/v3/myTrades")] == ["BTCUSDT"]
    assert page.notes["markets"] == ["BTC/USDT"]


def test_garbled_answer_is_bad_data(sim: RunningSim, adapter: BinanceAdapter) -> None:
    creds = creds_of(sim.create_key("binance", ["read"], history=EMPTY))
    adapter.markets()
    sim.control("POST", "binance/faults", {"malformed": 1})
    with pytest.raises(VenueBadData):
        adapter.fetch_balances(creds)
