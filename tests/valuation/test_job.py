"""The pricing job's rules: retries, retention, staleness, untrusted tokens, the switch, the configuration."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select, update

from appliance.errors import ConfigError
from appliance.services.valuation.job import Candidate, HistoricalPricer, value_row
from appliance.settings import settings_from_mapping
from appliance.store.models import CurrentPrice, PriceCandleDay, PriceObservation, Transaction, TransactionValue
from tests.support.sim import RunningSim
from tests.sync.conftest import onboard
from tests.valuation.conftest import add_trade, api_get, employee_of, poll, price, set_balances

QUIET = {"trades": 0, "deposits": 0, "withdrawals": 0}


def test_an_outage_leaves_values_unpriced_with_the_reason_and_they_are_retried(sta_factory: Any,
                                                                               sim: RunningSim) -> None:
    sta = sta_factory(valuation={"venues": ["kraken"]})
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    add_trade(sim, "kraken", key["api_key"], base="BTC", quote="USD", side="sell", amount="1", price="40000",
              fee="0", fee_asset="USD", timestamp=int((dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).timestamp()
                                                      * 1000))
    set_balances(sim, "kraken", key["api_key"], {"BTC": "1"})
    poll(sta, cid)
    sim.control("POST", "kraken/faults", {"outage": True})
    sim.control("DELETE", "requests")
    down = price(sta)
    assert down.assets_unpriced == ["BTC"] and down.transactions_unpriced == 1
    assert len(sim.requests_log("kraken")) == 1, "a venue found down is not asked again in the same run"
    body = api_get(sta, f"/employees/{employee_of(sta, cid)}/balances")
    (btc,) = body["balances"]
    assert btc["value"] is None
    assert btc["unpriced_reason"].startswith("no price for BTC in USD: kraken: venue unavailable")
    with sta.store.read() as session:
        stored = session.execute(select(TransactionValue)).scalars().one()
        session.expunge(stored)
    assert stored.value is None and "kraken: venue unavailable" in stored.reason
    assert stored.retry_at is not None and dt.timedelta(minutes=14) < stored.retry_at - stored.updated_at \
        <= dt.timedelta(minutes=15), "a failed source is asked again soon"

    sim.clear_faults()
    assert price(sta).transactions == 0, "not due yet"
    with sta.store.unit_of_work() as session:
        session.execute(update(TransactionValue).values(retry_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    again = price(sta)
    assert again.transactions == 1 and again.transactions_unpriced == 0 and again.assets_unpriced == []
    with sta.store.read() as session:
        stored = session.execute(select(TransactionValue)).scalars().one()
        assert stored.value is not None and stored.retry_at is None and stored.attempts == 2


def test_the_last_known_ticker_stands_in_while_fresh_and_a_stale_price_is_never_used(sta_factory: Any,
                                                                                     sim: RunningSim) -> None:
    sta = sta_factory(valuation={"venues": ["kraken"], "ticker_max_age_minutes": 1, "stale_after_hours": 2})
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    set_balances(sim, "kraken", key["api_key"], {"ETH": "2"})
    poll(sta, cid)
    first = price(sta)
    assert first.counters.tickers_fetched == 1
    sim.control("POST", "kraken/faults", {"outage": True})
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
    assert price(sta, now=later).assets_unpriced == [], "the ticker from 30 minutes ago stands in"
    with sta.store.read() as session:
        row = session.get(CurrentPrice, ("ETH", "USD"))
        assert row is not None and row.route == "ETH/USD kraken ticker (last known)"
    much_later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    assert price(sta, now=much_later).assets_unpriced == ["ETH"], "older than stale_after_hours: not used"


def test_a_venue_whose_markets_cannot_be_loaded_is_not_asked_again_for_a_while(sta_factory: Any, sim: RunningSim,
                                                                                  sent: list[Any]) -> None:
    venues = {v: {"base_url": sim.base_url(v), "requests_per_second": 1000} for v in ("kraken", "bitstamp")}
    venues["bitstamp"]["base_url"] = f"{sim.url}/unreachable-gateway"
    sta = sta_factory(venues=venues, valuation={"venues": ["bitstamp"]})
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    set_balances(sim, "kraken", key["api_key"], {"BTC": "1"})
    poll(sta, cid)
    sent.clear()
    assert price(sta).assets_unpriced == ["BTC"]
    assert [r for r in sent if "unreachable-gateway" in r.url], "the market list was asked for"
    sent.clear()
    again = price(sta)
    assert again.assets_unpriced == ["BTC"] and sent == [], "not asked again within ten minutes"
    with sta.store.read() as session:
        row = session.get(CurrentPrice, ("BTC", "USD"))
        assert row is not None and "bitstamp: markets unavailable" in row.reason


def test_a_price_that_went_stale_reads_as_unpriced(sta: Any, sim: RunningSim) -> None:
    cid, key = onboard(sta, sim, "kraken", history=QUIET)
    set_balances(sim, "kraken", key["api_key"], {"BTC": "1"})
    poll(sta, cid)
    price(sta)
    with sta.store.unit_of_work() as session:
        session.execute(update(CurrentPrice).values(priced_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=49)))
    (btc,) = api_get(sta, f"/employees/{employee_of(sta, cid)}/balances")["balances"]
    assert btc["value"] is None and btc["unpriced_reason"].startswith("the last price (kraken, ")
    assert btc["unpriced_reason"].endswith("is older than 48 h")


def test_observations_past_their_retention_are_deleted(sta: Any) -> None:
    now = dt.datetime.now(dt.UTC)
    old, recent = now - dt.timedelta(days=401), now - dt.timedelta(days=399)
    with sta.store.unit_of_work() as session:
        for fetched, price_ in ((old, Decimal(1)), (recent, Decimal(2))):
            session.add(PriceObservation(kind="import", source="import:x", asset="BTC", currency="USD", timeframe="",
                                         at=fetched, price=price_, fetched_at=fetched))
            session.add(PriceCandleDay(source="kraken", asset="BTC", currency="USD", timeframe="1h",
                                       day=fetched.replace(hour=0, minute=0, second=0, microsecond=0), candles=24,
                                       complete=True, fetched_at=fetched))
    assert price(sta).observations_pruned == 1
    with sta.store.read() as session:
        assert session.execute(select(PriceObservation.price)).scalars().all() == [Decimal(2)]
        assert len(session.execute(select(PriceCandleDay)).all()) == 1


def test_valuation_switched_off_fetches_nothing_and_says_so(sta_factory: Any, sim: RunningSim) -> None:
    sta = sta_factory(valuation={"enabled": False})
    cid, _key = onboard(sta, sim, "kraken", history={"trades": 1, "deposits": 0, "withdrawals": 0})
    poll(sta, cid)
    sim.control("DELETE", "requests")
    result = price(sta)
    assert not result.enabled and result.lines()[0].startswith("valuation is turned off")
    assert sim.requests_log() == []
    body = api_get(sta, f"/employees/{employee_of(sta, cid)}/balances")
    assert body["balances"] and all(b["value"] is None and b["unpriced_reason"].startswith("valuation is turned off")
                                    for b in body["balances"])


def test_tokens_the_customer_did_not_configure_are_not_priced_by_their_symbol() -> None:
    """Anyone can deploy a token called USDT; a transfer of one is not priced as USDT."""
    book = SimpleNamespace(now=dt.datetime.now(dt.UTC), currency="USD")
    pricer: Any = SimpleNamespace(book=book, price=lambda *a: pytest.fail("must not be priced"))
    trusted = {"ethereum": {"0xdac17f958d2ee523a2206206994597c13d831ec7"}}
    fake = Candidate(1, dt.datetime.now(dt.UTC), "USDT", Decimal(1000), "0x" + "ab" * 20, None, None, None,
                     "ethereum", "wallet", 0)
    row = value_row(fake, pricer, book, trusted)  # type: ignore[arg-type]
    assert row["value"] is None and "is not one of chains.evm.ethereum.tokens" in row["reason"]
    nft = Candidate(2, dt.datetime.now(dt.UTC), "PUNK#42", Decimal(1), "0xdAC17F958D2ee523a2206206994597C13D831ec7",
                    None, None, None, "ethereum", "wallet", 0)
    assert "non-fungible" in value_row(nft, pricer, book, trusted)["reason"]  # type: ignore[arg-type]
    assert HistoricalPricer  # the real pricer is exercised by the simulator tests


def test_the_transactions_stored_are_valued_at_most_per_run(sta: Any, sim: RunningSim) -> None:
    cid, _key = onboard(sta, sim, "kraken", history={"trades": 6, "deposits": 2, "withdrawals": 0})
    poll(sta, cid)
    with sta.store.read() as session:
        stored = len(session.execute(select(Transaction.id)).all())
    first = price(sta, transaction_limit=3)
    assert first.transactions == 3 and first.transactions_left
    rest = price(sta)
    assert rest.transactions == stored - 3 and not rest.transactions_left


@pytest.mark.parametrize(("raw", "message"), [
    ({"currency": "us dollar"}, "valuation.currency' in t: must be a currency code"),
    ({"venues": ["kraken", "ftx"]}, "'ftx' is not a price source"),
    ({"venues": ["kraken", "kraken"]}, "lists a source twice"),
    ({"assets": {"btc": {"venues": ["kraken"]}}}, "asset codes are upper-case"),
    ({"assets": {"BTC": {"venues": ["nope"]}}}, "valuation.assets.BTC.venues' in t: 'nope' is not a price source"),
    ({"cross_via": ["usdt"]}, "'usdt' is not an asset code"),
    ({"candle_timeframe": "2h"}, "must be one of 1m, 5m, 15m, 30m, 1h, 1d"),
])
def test_bad_valuation_settings_stop_start_up_naming_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="valuation") as caught:
        settings_from_mapping({"valuation": raw}, source="t")
    assert message in caught.value.message


def test_per_asset_source_order_from_the_environment() -> None:
    settings = settings_from_mapping({"valuation": {"assets": {"BTC": {}}}},
                                     env={"VIGATRA_VALUATION_ASSETS_BTC_VENUES": "bitstamp,import",
                                          "VIGATRA_VALUATION_CURRENCY": "EUR"})
    assert settings.valuation.assets["BTC"].venues == ("bitstamp", "import")
    assert settings.valuation.currency == "EUR"
