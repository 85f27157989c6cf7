"""Values against the simulators, on both databases, through the real ccxt clients and the real API.

Personas: alice (Admin) reads every employee's balances. Each test onboards read-only keys through the real
path, syncs, runs the pricing job and reads what the API answers.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from appliance.store.models import CurrentPrice, Transaction, TransactionValue
from tests.support.sim import RunningSim
from tests.sync.conftest import onboard
from tests.valuation.conftest import (
    add_trade,
    api_get,
    employee_of,
    near,
    poll,
    price,
    set_balances,
    sim_candle_close,
    sim_price,
    sync_and_price,
)

QUIET = {"trades": 0, "deposits": 0, "withdrawals": 0}


def balances_by_asset(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["asset"]: item for item in body["balances"]}


def test_balances_carry_values_in_the_base_currency(sta: Any, sim: RunningSim) -> None:
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    set_balances(sim, "kraken", key["api_key"], {"BTC": "0.5", "ETH": "4.25", "USD": "1200.10"})
    sync_and_price(sta, cid)

    body = api_get(sta, f"/employees/{employee_of(sta, cid)}/balances")
    assert body["currency"] == "USD"
    items = balances_by_asset(body)
    btc = items["BTC"]
    assert btc["price_source"] == "kraken" and btc["price_route"] == "BTC/USD kraken ticker"
    assert near(Decimal(btc["price"]), sim_price(sim, "kraken", "BTC", "USD"))
    assert Decimal(btc["value"]) == Decimal("0.5") * Decimal(btc["price"])  # exact: amount times price
    assert btc["unpriced_reason"] is None and btc["priced_at"].endswith("Z")
    assert Decimal(items["ETH"]["value"]) == Decimal("4.25") * Decimal(items["ETH"]["price"])
    # The base currency itself is worth its amount.
    assert Decimal(items["USD"]["value"]) == Decimal("1200.10") and items["USD"]["price_source"] == "identity"
    total = body["total"]
    assert total["complete"] and total["unpriced"] == 0
    assert Decimal(total["value"]) == sum(Decimal(i["value"]) for i in body["balances"])


def test_a_trade_at_10_37_is_priced_from_the_candle_that_contains_it(sta: Any, sim: RunningSim) -> None:
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).replace(hour=10, minute=37, second=0, microsecond=0)
    add_trade(sim, "kraken", key["api_key"], base="BTC", quote="USD", side="buy", amount="0.25", price="40000",
              fee="1", fee_asset="USD", timestamp=int(yesterday.timestamp() * 1000))
    sync_and_price(sta, cid)

    candle_open = yesterday.replace(minute=0)
    close = sim_candle_close(sim, "kraken", "BTC", "USD", candle_open)
    with sta.store.read() as session:
        tx = session.execute(select(Transaction).where(Transaction.connection_id == cid, Transaction.stream == "trades",
                                                       Transaction.asset == "BTC")).scalars().one_or_none()
        assert tx is not None and tx.occurred_at == yesterday
        stored = session.get(TransactionValue, (tx.id, "USD"))
        assert stored is not None
        session.expunge_all()  # detached snapshots: the read session's rollback must not expire them
    assert stored.price == close, "the close of the 10:00-11:00 candle"
    assert stored.value == Decimal("0.25") * close
    assert stored.priced_at == candle_open and stored.route == "BTC/USD kraken candle 1h"
    latest = sim_price(sim, "kraken", "BTC", "USD")
    assert stored.price != latest, "not the latest price"
    for neighbour in (candle_open - dt.timedelta(hours=1), candle_open + dt.timedelta(hours=1)):
        assert stored.price != sim_candle_close(sim, "kraken", "BTC", "USD", neighbour)

    body = api_get(sta, f"/employees/{employee_of(sta, cid)}/transactions")
    assert body["currency"] == "USD"
    (item,) = [t for t in body["transactions"] if t["id"] == tx.id]
    assert Decimal(item["value"]) == Decimal("0.25") * close and item["price_source"] == "kraken"
    assert item["priced_at"] == candle_open.isoformat().replace("+00:00", "Z")
    # the valuation's price beside the trade's own: neither hides the other
    assert Decimal(item["price"]) == close and Decimal(item["trade_price"]) == Decimal("40000")


def test_a_cross_rate_through_usdt_is_recorded_as_such(sta: Any, sim: RunningSim) -> None:
    """BNB is listed against USDT only (on Binance): BNB/USDT at Binance times USDT/USD at the first source that
    lists it (Kraken)."""
    cid, key = onboard(sta, sim, "binance", history=QUIET)
    set_balances(sim, "binance", key["api_key"], {"BNB": "3", "USDT": "10"})
    sync_and_price(sta, cid)

    items = balances_by_asset(api_get(sta, f"/employees/{employee_of(sta, cid)}/balances"))
    bnb = items["BNB"]
    assert bnb["price_route"] == "BNB/USDT binance ticker x USDT/USD kraken ticker"
    assert bnb["price_source"] == "binance+kraken"
    expected = sim_price(sim, "binance", "BNB", "USDT") * sim_price(sim, "kraken", "USDT", "USD")
    assert near(Decimal(bnb["price"]), expected)
    assert Decimal(bnb["value"]) == 3 * Decimal(bnb["price"])
    with sta.store.read() as session:
        row = session.get(CurrentPrice, ("BNB", "USD"))
        assert row is not None and row.route == bnb["price_route"] and row.source == "binance+kraken"


def test_a_crossed_trade_is_priced_from_both_legs_candles(sta: Any, sim: RunningSim) -> None:
    cid, key = onboard(sta, sim, "binance", history=QUIET)
    set_balances(sim, "binance", key["api_key"], {"BNB": "1", "USDT": "100"})
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).replace(minute=37, second=0, microsecond=0)
    add_trade(sim, "binance", key["api_key"], base="BNB", quote="USDT", side="buy", amount="2", price="300",
              fee="0.1", fee_asset="USDT", timestamp=int(when.timestamp() * 1000))
    sync_and_price(sta, cid)
    with sta.store.read() as session:
        stored = session.execute(select(TransactionValue).join(Transaction).where(
            Transaction.connection_id == cid, Transaction.asset == "BNB")).scalars().one()
        session.expunge(stored)
    opened = when.replace(minute=0)
    expected = (sim_candle_close(sim, "binance", "BNB", "USDT", opened)
                * sim_candle_close(sim, "kraken", "USDT", "USD", opened))
    assert stored.price == expected and stored.value == 2 * expected
    assert stored.route == "BNB/USDT binance candle 1h x USDT/USD kraken candle 1h"


def test_an_unknown_asset_is_unpriced_with_a_reason_never_zero(sta: Any, sim: RunningSim) -> None:
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    set_balances(sim, "kraken", key["api_key"], {"ADA": "1000", "BTC": "1"})
    result = sync_and_price(sta, cid)
    assert result.assets_unpriced == ["ADA"]

    body = api_get(sta, f"/employees/{employee_of(sta, cid)}/balances")
    ada = balances_by_asset(body)["ADA"]
    assert ada["value"] is None and ada["price"] is None and ada["price_source"] is None
    assert ada["unpriced_reason"] == "no price for ADA in USD: no price source lists ADA against USD or USDT, USDC, BTC"
    total = body["total"]
    assert total == {"value": balances_by_asset(body)["BTC"]["value"], "priced": 1, "unpriced": 1, "complete": False}


def test_stablecoins_are_priced_like_anything_else(sta: Any, sim: RunningSim) -> None:
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    set_balances(sim, "kraken", key["api_key"], {"USDT": "1000", "USDC": "1000"})
    sync_and_price(sta, cid)
    items = balances_by_asset(api_get(sta, f"/employees/{employee_of(sta, cid)}/balances"))
    for asset in ("USDT", "USDC"):
        price_ = Decimal(items[asset]["price"])
        assert price_ != 1, f"{asset} must not be assumed to be worth 1"
        assert near(price_, sim_price(sim, "kraken", asset, "USD"), Decimal("0.0005"))
        assert items[asset]["price_route"] == f"{asset}/USD kraken ticker"


def test_a_price_asked_twice_is_fetched_once(sta: Any, sim: RunningSim) -> None:
    first, key1 = onboard(sta, sim, "kraken", history=QUIET)
    second, key2 = onboard(sta, sim, "kraken", history=QUIET)
    set_balances(sim, "kraken", key1["api_key"], {"BTC": "1"})
    set_balances(sim, "kraken", key2["api_key"], {"BTC": "2"})
    day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).replace(hour=9, minute=5, second=0, microsecond=0)
    for key, minute in ((key1, 5), (key2, 50)):
        add_trade(sim, "kraken", key["api_key"], base="BTC", quote="USD", side="buy", amount="0.1", price="40000",
                  fee="0", fee_asset="USD", timestamp=int(day.replace(minute=minute).timestamp() * 1000))
    poll(sta, first, second)
    sim.control("DELETE", "requests")
    result = price(sta)
    assert result.transactions == 2 and result.transactions_unpriced == 0
    public = [r for r in sim.requests_log("kraken") if r["path"].startswith("/0/public/")]
    tickers = [r for r in public if r["path"] == "/0/public/Ticker"]
    candles = [r for r in public if r["path"] == "/0/public/OHLC"]
    assert len(tickers) == 1, "two employees hold BTC: one ticker request"
    assert len(candles) == 1, "two trades on one day: one day of candles"
    assert result.counters.tickers_fetched == 1 and result.counters.candle_days_fetched == 1

    sim.control("DELETE", "requests")
    again = price(sta)
    assert again.counters.tickers_fetched == 0, "a ticker fetched minutes ago is reused"
    assert [r for r in sim.requests_log("kraken") if r["path"].startswith("/0/public/")] == []


def test_values_in_another_base_currency(sta_factory: Any, sim: RunningSim) -> None:
    sta = sta_factory(valuation={"currency": "EUR"})
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    set_balances(sim, "kraken", key["api_key"], {"BTC": "1", "USD": "500", "USDT": "100"})
    sync_and_price(sta, cid)
    body = api_get(sta, f"/employees/{employee_of(sta, cid)}/balances")
    assert body["currency"] == "EUR"
    items = balances_by_asset(body)
    assert items["BTC"]["price_route"] == "BTC/EUR kraken ticker"
    assert near(Decimal(items["BTC"]["price"]), sim_price(sim, "kraken", "BTC", "EUR"))
    # Kraken lists EUR/USD, not USD/EUR: the price of a dollar is its inverse.
    assert items["USD"]["price_route"] == "1/(EUR/USD) kraken ticker"
    assert near(Decimal(items["USD"]["price"]), 1 / sim_price(sim, "kraken", "EUR", "USD"))
    assert items["USDT"]["price_route"] == "USDT/EUR kraken ticker"


def test_prediction_positions_are_valued_from_the_markets_own_price(sta: Any, sim: RunningSim) -> None:
    cid, _key = onboard(sta, sim, "kalshi", history={"positions": 3, "fills": 2, "settlements": 0})
    sync_and_price(sta, cid)
    body = api_get(sta, f"/employees/{employee_of(sta, cid)}/predictions")
    assert body["currency"] == "USD" and body["positions"]
    from appliance.sim.venues.kalshi import BY_TICKER

    for item in body["positions"]:
        market = BY_TICKER[item["market_id"]]
        assert item["price_source"] == "kalshi"
        assert item["price_route"] == f"{item['market_id']}:{item['outcome']}/USD kalshi market"
        if market.result:
            per_contract = Decimal(1) if market.result == item["outcome"] else Decimal(0)
        else:
            bid = market.yes_bid if item["outcome"] == "yes" else (1 - market.yes_ask if market.yes_ask else 0)
            per_contract = bid if bid else (market.last_price if item["outcome"] == "yes" else 1 - market.last_price)
        assert Decimal(item["price"]) == per_contract
        assert Decimal(item["value"]) == Decimal(item["size"]) * per_contract
    fills = api_get(sta, f"/employees/{employee_of(sta, cid)}/transactions")["transactions"]
    priced = [f for f in fills if f["quote_asset"] == "USD"]
    assert priced and all(f["price_source"] == "kalshi" and f["price_route"].startswith("fill price") for f in priced)
    assert all(Decimal(f["value"]) == Decimal(f["quote_amount"]) for f in priced), "USD fills are worth what they cost"


def test_polymarket_positions_are_valued_from_gamma_prices_converted_from_usdc(sta: Any, sim: RunningSim) -> None:
    from appliance.rbac.actors import system_actor
    from appliance.services import employees, onboarding
    from appliance.sim.venues.polymarket import MARKETS_BY_CONDITION

    address = sim.control("POST", "polymarket/wallets", {"positions": 3, "trades": 2, "activity": 0})["address"]
    app = sta.appliance
    with app.store.unit_of_work() as session:
        person = employees.create(session, name="Pat Poly", email="pat@example.com")
        row, _token = onboarding.create_link(session, system_actor("t"), sta.settings, person.id)
        link = onboarding.Link(row.id, row.employee_id, row.purpose, False, row.expires_at)
        cid = onboarding.record_wallet(session, link, app.venues.get("polymarket"), address, "").id
    sync_and_price(sta, cid)
    body = api_get(sta, f"/employees/{employee_of(sta, cid)}/predictions")
    usdc = sim_price(sim, "kraken", "USDC", "USD")
    assert body["positions"]
    for item in body["positions"]:
        market = MARKETS_BY_CONDITION[item["market_id"]]
        own = market.price(list(market.outcomes).index(item["outcome"]))
        assert item["price_source"] == "polymarket+kraken"
        assert item["price_route"] == f"{item['market_id']}:{item['outcome']}/USDC polymarket market x " \
                                      "USDC/USD kraken ticker"
        assert near(Decimal(item["price"]), own * usdc, Decimal("0.0005"))
        assert Decimal(item["value"]) == Decimal(item["size"]) * Decimal(item["price"])


def test_a_bitcoin_wallet_is_valued_from_the_configured_exchanges(sta_factory: Any, sim: RunningSim) -> None:
    import secrets

    from appliance.rbac.actors import system_actor
    from appliance.services import employees, onboarding
    from appliance.venues.chains.addresses import segwit_encode
    from tests.sync.conftest import sim_venues

    sta = sta_factory(venues=sim_venues(sim), chains={"bitcoin": {
        "enabled": True, "esplora_url": f"{sim.url}/esplora/api", "requests_per_second": 1000}})
    address = segwit_encode("bc", 0, secrets.token_bytes(20))
    sim.control("POST", f"esplora/addresses/{address}/txs", {"txs": [{"receive": 150_000_000}]})
    app = sta.appliance
    with app.store.unit_of_work() as session:
        person = employees.create(session, name="Bea Bitcoin", email="bea@example.com")
        row, _token = onboarding.create_link(session, system_actor("t"), sta.settings, person.id)
        link = onboarding.Link(row.id, row.employee_id, row.purpose, False, row.expires_at)
        cid = onboarding.record_wallet(session, link, app.venues.get("bitcoin"), address, "").id
    sync_and_price(sta, cid)
    (btc,) = api_get(sta, f"/employees/{employee_of(sta, cid)}/balances")["balances"]
    assert btc["asset"] == "BTC" and btc["price_route"] == "BTC/USD kraken ticker"
    assert Decimal(btc["value"]) == Decimal("1.5") * Decimal(btc["price"])
    (transfer,) = api_get(sta, f"/employees/{employee_of(sta, cid)}/transactions")["transactions"]
    with sta.store.read() as session:
        stored = session.get(TransactionValue, (transfer["id"], "USD"))
        assert stored is not None
        session.expunge(stored)
    opened = dt.datetime.fromisoformat(transfer["occurred_at"].replace("Z", "+00:00")).replace(
        minute=0, second=0, microsecond=0)
    if opened + dt.timedelta(hours=1) > dt.datetime.now(dt.UTC):  # mined this hour: its candle is still forming
        assert transfer["value"] is None and "candle from" in transfer["unpriced_reason"]
        assert "has not closed yet" in transfer["unpriced_reason"]
        assert stored.retry_at == opened + dt.timedelta(hours=1, minutes=1), "priced once the candle has closed"
    else:  # the first source in the order with a candle for that hour (Kraken keeps only 720 of them)
        assert transfer["price_route"] == f"BTC/USD {transfer['price_source']} candle 1h"
        assert Decimal(transfer["value"]) == Decimal(transfer["amount"]) * Decimal(transfer["price"])
        assert transfer["trade_price"] is None, "a transfer has no trade price of its own"
