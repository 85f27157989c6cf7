"""Polymarket through its public Data API and Gamma, against the simulator: positions and trades equal
what the venue holds (maker fills included), history arrives once and completely across pages and runs,
amounts stay exact, failures are classified, and requests carry nothing but the wallet address.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import pytest

from appliance.errors import EgressRefused, Invalid, VenueBadData, VenueRateLimited, VenueTransient
from appliance.sim.venues.polymarket import MARKETS
from appliance.venues.base import Kind, TxRecord
from appliance.venues.predictions import PolymarketAdapter
from tests.predictions.conftest import drain
from tests.support.sim import RunningSim

VENUE = "polymarket"


def new_wallet(sim: RunningSim, **counts: int) -> str:
    return str(sim.control("POST", f"{VENUE}/wallets", counts)["address"])


def ledger(sim: RunningSim, address: str) -> dict[str, Any]:
    return dict(sim.control("GET", f"{VENUE}/wallets/{address}/ledger"))


def trade_key(r: TxRecord) -> tuple[str, str, str, Decimal, Decimal]:
    raw = r.raw or {}
    assert r.price is not None
    return str(raw["transaction_hash"]), str(raw["token_id"]), r.kind.upper(), r.amount, r.price


def fetcher(adapter: PolymarketAdapter, address: str) -> Any:
    return lambda stream, cursor: adapter.fetch_transactions(address, stream, cursor)


def requests_for(sim: RunningSim, address: str) -> list[dict[str, Any]]:
    return [e for e in sim.requests_log(VENUE) if address in e["query"]]


# -- addresses --------------------------------------------------------------------------------------

def test_address_forms_and_precise_refusals(polymarket: PolymarketAdapter) -> None:
    checksummed = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55 test vector
    assert polymarket.validate_address(checksummed) == checksummed.lower()
    assert polymarket.validate_address("  " + checksummed.upper().replace("0X", "0x") + " ") == checksummed.lower()
    cases = {
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD": "checksum",
        "5aaeb6053f3e94c9b9a09f33669435e7ef1beaed": "starts with 0x",
        "0x5aaeb6053f3e94c9b9a09f33669435e7ef1bea": "this one has 38",
        "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaeg": "not hexadecimal",
    }
    for bad, phrase in cases.items():
        with pytest.raises(Invalid) as caught:
            polymarket.validate_address(bad)
        assert phrase in caught.value.message
        assert caught.value.field == "address"


# -- positions ------------------------------------------------------------------------------------------

def test_positions_match_the_venue_with_gamma_titles_and_categories(
        sim: RunningSim, polymarket: PolymarketAdapter) -> None:
    address = new_wallet(sim, positions=5, trades=0, activity=0)
    truth = {(p["condition_id"], p["outcome"]): p for p in ledger(sim, address)["positions"]}
    positions = polymarket.fetch_positions(address)
    assert {(p.market_id, p.outcome) for p in positions} == set(truth)
    for p in positions:
        expected = truth[(p.market_id, p.outcome)]
        assert p.size == Decimal(expected["size"])
        assert p.avg_price == Decimal(expected["avg_price"])
        assert p.current_value == Decimal(expected["current_value"])
        assert p.market_title == expected["title"]
    categories = {p.market_title: p.category for p in positions}
    # Legacy category, first subject tag of an open market, and a closed market (Gamma needs closed=true)
    # whose first tag is the generic "All".
    assert categories["Will Shakhtar Donetsk win the 2026-27 UEFA Champions League?"] == "Sports"
    assert categories["Will the Fed cut rates at the December 2026 meeting?"] == "Economy"
    assert categories["Will the highest temperature in Austin be between 90-91°F on October 8?"] == "Weather"


def test_positions_walk_every_page(sim: RunningSim, polymarket: PolymarketAdapter) -> None:
    address = new_wallet(sim, positions=0, trades=0, activity=0)
    sim.control("POST", f"{VENUE}/wallets/{address}/positions",
                {"positions": [{"size": str(10 + i), "avg_price": "0.5"} for i in range(1100)]})
    assert len(polymarket.fetch_positions(address)) == 1100
    pages = [e for e in requests_for(sim, address) if e["path"] == "/v2/positions"]
    assert len(pages) == 3
    assert all("user=" in e["query"] for e in pages)  # the cursor alone is refused by the venue


# -- trades ---------------------------------------------------------------------------------------------

def test_trades_match_the_venue_including_maker_fills(sim: RunningSim, polymarket: PolymarketAdapter) -> None:
    address = new_wallet(sim, positions=0, trades=30, activity=0)
    long_slug = next(m for m in MARKETS if len(m.slug) > 64)
    sim.control("POST", f"{VENUE}/wallets/{address}/trades", {"trades": [
        {"condition_id": long_slug.condition_id, "outcome_index": 0, "taker": False}]})
    truth = ledger(sim, address)["trades"]
    assert any(not t["taker"] for t in truth) and any(t["taker"] for t in truth)
    records, cursor, _ = drain(fetcher(polymarket, address), "trades")
    assert sorted(trade_key(r) for r in records) == sorted(
        (t["transaction_hash"], t["token_id"], t["side"], Decimal(t["size"]), Decimal(t["price"])) for t in truth)
    assert len({r.venue_tx_id for r in records}) == len(records)
    by_tx = {t["transaction_hash"]: t for t in truth}
    for r in records:
        t = by_tx[r.raw["transaction_hash"]] if r.raw else {}
        assert r.stream == "trades" and r.kind in (Kind.BUY, Kind.SELL)
        assert r.quote_asset == "USDC" and r.quote_amount == r.amount * (r.price or 0)
        assert r.market == t["condition_id"]
        assert r.occurred_at == dt.datetime.fromtimestamp(t["timestamp"], dt.UTC)
        assert len(r.asset) <= 64 and r.asset.endswith(":" + t["outcome"]) and r.asset.startswith(t["slug"][:20])
        assert "name" not in (r.raw or {}) and "pseudonym" not in (r.raw or {})
    assert cursor["mark"]["ts"] == max(t["timestamp"] for t in truth)


def test_second_sync_adds_nothing_and_new_trades_arrive_once(sim: RunningSim, polymarket: PolymarketAdapter) -> None:
    address = new_wallet(sim, positions=0, trades=12, activity=0)
    fetch = fetcher(polymarket, address)
    first, cursor, _ = drain(fetch, "trades")
    again, cursor, _ = drain(fetch, "trades", cursor)
    assert again == []
    # A fill in the same block second as the newest one stored, and two later ones.
    newest = cursor["mark"]["ts"]
    sim.control("POST", f"{VENUE}/wallets/{address}/trades", {"count": 1, "timestamp": newest})
    sim.control("POST", f"{VENUE}/wallets/{address}/trades", {"count": 2, "timestamp": newest + 30})
    added, cursor, _ = drain(fetch, "trades", cursor)
    assert len(added) == 3
    assert not {r.venue_tx_id for r in added} & {r.venue_tx_id for r in first}
    assert drain(fetch, "trades", cursor)[0] == []
    starts = [parse_qs(e["query"])["start"][0] for e in requests_for(sim, address) if e["path"] == "/v2/trades"]
    assert starts[0] == "1"  # the first run asks for all history, not the default three years
    assert starts[-1] == str(newest + 30)


def test_multi_page_history_is_complete(sim: RunningSim, polymarket: PolymarketAdapter) -> None:
    address = new_wallet(sim, positions=0, trades=1203, activity=0)
    records, _, pages = drain(fetcher(polymarket, address), "trades")
    assert len(pages) == 3 and [p.done for p in pages] == [False, False, True]
    assert pages[-1].complete_until is not None
    assert len(records) == len({r.venue_tx_id for r in records}) == 1203


def test_an_interrupted_run_resumes_even_when_the_venue_cursor_expired(
        sim: RunningSim, polymarket: PolymarketAdapter) -> None:
    address = new_wallet(sim, positions=0, trades=1100, activity=0)
    fetch = fetcher(polymarket, address)
    first = fetch("trades", {})
    assert not first.done and first.cursor["run"]["next"]
    sim.control("POST", f"{VENUE}/cursors/rotate")  # every outstanding cursor is now refused
    rest, cursor, _ = drain(fetch, "trades", first.cursor)
    ids = {r.venue_tx_id for r in first.records} | {r.venue_tx_id for r in rest}
    assert len(ids) == 1100
    assert drain(fetch, "trades", cursor)[0] == []


def test_exact_decimals(sim: RunningSim, polymarket: PolymarketAdapter) -> None:
    address = new_wallet(sim, positions=0, trades=0, activity=0)
    sim.control("POST", f"{VENUE}/wallets/{address}/trades",
                {"trades": [{"size": "98765432109.8765432", "price": "0.0001", "side": "BUY", "taker": False}]})
    sim.control("POST", f"{VENUE}/wallets/{address}/positions",
                {"positions": [{"size": "1234567.000001", "avg_price": "0.6699"}]})
    (record,), _, _ = drain(fetcher(polymarket, address), "trades")
    assert record.amount == Decimal("98765432109.8765432")
    assert record.price == Decimal("0.0001")
    assert record.quote_amount == Decimal("9876543.21098765432")
    (position,) = polymarket.fetch_positions(address)
    assert position.size == Decimal("1234567.000001") and position.avg_price == Decimal("0.6699")


# -- activity -------------------------------------------------------------------------------------------

def test_activity_includes_deposits_withdrawals_and_tips_but_not_trades(
        sim: RunningSim, polymarket: PolymarketAdapter) -> None:
    address = new_wallet(sim, positions=0, trades=5, activity=18)
    truth = ledger(sim, address)["activity"]
    fetch = fetcher(polymarket, address)
    records, cursor, _ = drain(fetch, "activity")
    assert sorted((r.raw or {})["transaction_hash"] for r in records) == sorted(a["transaction_hash"] for a in truth)
    kinds = {(r.raw or {})["type"]: r.kind for r in records}
    assert kinds["DEPOSIT"] == Kind.DEPOSIT and kinds["WITHDRAWAL"] == Kind.WITHDRAWAL
    assert kinds["REDEEM"] == Kind.SETTLEMENT and kinds["REWARD"] == Kind.REWARD
    assert kinds["TIP"] in (Kind.TRANSFER_IN, Kind.TRANSFER_OUT) and kinds["SPLIT"] == Kind.OTHER
    by_tx = {a["transaction_hash"]: a for a in truth}
    assert all(r.amount == Decimal(by_tx[(r.raw or {})["transaction_hash"]]["usdc_size"]) for r in records)
    assert all(r.asset == "USDC" for r in records)
    assert drain(fetch, "activity", cursor)[0] == []


# -- failures -------------------------------------------------------------------------------------------

def test_rate_limit_carries_retry_after(sim: RunningSim, polymarket: PolymarketAdapter) -> None:
    address = new_wallet(sim, positions=1, trades=1, activity=0)
    sim.control("POST", f"{VENUE}/faults", {"burst_429": 1, "retry_after": 7})
    with pytest.raises(VenueRateLimited) as caught:
        polymarket.fetch_transactions(address, "trades", {})
    assert caught.value.retry_after == pytest.approx(7, abs=1)
    assert caught.value.venue_code == "rate_limited"


def test_outage_is_transient_and_garbage_is_bad_data(sim: RunningSim, polymarket: PolymarketAdapter) -> None:
    address = new_wallet(sim, positions=1, trades=1, activity=0)
    sim.control("POST", f"{VENUE}/faults", {"fail_5xx": 1})
    with pytest.raises(VenueTransient):
        polymarket.fetch_positions(address)
    sim.control("POST", f"{VENUE}/faults", {"malformed": 1})
    with pytest.raises(VenueBadData):
        polymarket.fetch_transactions(address, "trades", {})


def test_only_read_endpoints_leave_the_box(polymarket: PolymarketAdapter) -> None:
    session = polymarket.egress.session(polymarket.id, polymarket.hosts, polymarket.read_endpoints)
    for method, url in (("POST", "https://data-api.polymarket.com/v2/trades"),
                        ("GET", "https://clob.polymarket.com/orders"),
                        ("GET", "https://data-api.polymarket.com/v1/accounting/snapshot")):
        with pytest.raises(EgressRefused):
            session.request(method, url)


def test_requests_carry_the_address_and_nothing_else(sim: RunningSim, polymarket: PolymarketAdapter) -> None:
    address = new_wallet(sim, positions=2, trades=3, activity=3)
    sim.control("DELETE", "requests")
    polymarket.fetch_positions(address)
    for stream in polymarket.streams:
        drain(fetcher(polymarket, address), stream)
    log = sim.requests_log(VENUE)
    assert log
    allowed = {"user", "limit", "cursor", "start", "taker_only", "type", "exclude_deposits_withdrawals",
               "condition_ids", "closed", "include_tag"}
    for entry in log:
        query = parse_qs(entry["query"])
        assert set(query) <= allowed, entry["path"]
        assert query.get("user", [address]) == [address]
        headers = {k.lower() for k in entry["headers"]}
        assert not headers & {"cookie", "authorization", "x-forwarded-for", "from"}
        assert entry["method"] == "GET" and entry["body"] == ""
