"""The simulators' public market data: one price path across venues (within a spread), each venue's documented
shapes and limits, no key or signature needed — read with the real ccxt clients where the appliance uses them."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
import requests

from appliance.settings import VENUE_IDS, settings_from_mapping
from appliance.venues.marketdata import MARKET_DATA_ENDPOINTS, ExchangeMarketData
from appliance.venues.registry import VenueRegistry
from tests.support.sim import RunningSim

EXCHANGES = sorted(MARKET_DATA_ENDPOINTS)
HOUR = 3_600_000


@pytest.fixture
def registry(sim: RunningSim) -> Iterator[VenueRegistry]:
    venues = {v: {"base_url": sim.base_url(v), "requests_per_second": 1000} for v in VENUE_IDS}
    yield VenueRegistry(settings_from_mapping({"venues": venues}))
    sim.clear_faults()


def now_ms() -> int:
    return int(time.time() * 1000)


def test_every_exchange_quotes_the_same_asset_within_a_spread(registry: VenueRegistry) -> None:
    quotes = {}
    for venue in EXCHANGES:
        market = ExchangeMarketData(registry.get(venue))  # type: ignore[arg-type]
        assert ("BTC", "USDT") in market.pairs(), venue
        quotes[venue] = market.ticker("BTC", "USDT").price
    low, high = min(quotes.values()), max(quotes.values())
    assert (high - low) / low < Decimal("0.002"), quotes
    assert len(set(quotes.values())) > 1, "each venue has its own offset, not a copy of another's"


def test_every_exchange_serves_candles_on_the_same_path(registry: VenueRegistry, sim: RunningSim) -> None:
    day = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    path = sim.app.state.prices
    for venue in EXCHANGES:
        bars = ExchangeMarketData(registry.get(venue)).candles(  # type: ignore[arg-type]
            "BTC", "USDT", "1h", day, day + dt.timedelta(days=1))
        assert [b.open_at for b in bars] == [day + dt.timedelta(hours=h) for h in range(24)], venue
        for bar in bars:
            opened = int(bar.open_at.timestamp() * 1000)
            assert bar.close == path.price(venue, "BTC", "USDT", opened + HOUR), "close = the price at the end"


def test_public_market_data_needs_no_key_or_signature(sim: RunningSim) -> None:
    start = (now_ms() - 10 * HOUR) // 1000
    urls = [
        "binance/api/v3/ticker/24hr?symbol=BTCUSDT", "binance/api/v3/klines?symbol=BTCUSDT&interval=1h",
        "bybit/v5/market/tickers?category=spot&symbol=BTCUSDT",
        "coinbase/api/v3/brokerage/market/products/BTC-USD/ticker?limit=1",
        f"coinbase/api/v3/brokerage/market/products/BTC-USD/candles?start={start}&end={start + 3600}"
        "&granularity=ONE_HOUR",
        "kraken/0/public/Ticker?pair=XBTUSD", "kraken/0/public/OHLC?pair=XBTUSD&interval=60",
        "gemini/v1/pubticker/btcusd", "gemini/v2/candles/btcusd/1hr",
        "okx/api/v5/market/ticker?instId=BTC-USDT", "okx/api/v5/market/history-candles?instId=BTC-USDT&bar=1H",
        "kucoin/api/v1/market/stats?symbol=BTC-USDT", "kucoin/api/v1/market/candles?symbol=BTC-USDT&type=1hour",
        "bitstamp/api/v2/ticker/btcusd/", "bitstamp/api/v2/ohlc/btcusd/?step=3600&limit=5",
    ]
    for url in urls:
        response = requests.get(f"{sim.url}/{url}", timeout=10)
        assert response.status_code == 200, (url, response.text[:200])


def test_kraken_serves_only_its_720_most_recent_candles(sim: RunningSim) -> None:
    body = requests.get(f"{sim.url}/kraken/0/public/OHLC?pair=XXBTZUSD&interval=60&since=0", timeout=10).json()
    rows = body["result"]["XXBTZUSD"]
    assert len(rows) == 720 and rows[-1][0] * 1000 > now_ms() - HOUR, "the last entry is the forming frame"
    assert body["result"]["last"] == rows[-2][0], "last: the last committed frame"
    since = rows[-5][0]
    later = requests.get(f"{sim.url}/kraken/0/public/OHLC?pair=XBTUSD&interval=60&since={since}", timeout=10).json()
    assert [r[0] for r in later["result"]["XXBTZUSD"]] == [r[0] for r in rows[-4:]], "entries after since"
    unknown = requests.get(f"{sim.url}/kraken/0/public/Ticker?pair=ADAUSD", timeout=10).json()
    assert unknown == {"error": ["EQuery:Unknown asset pair"]}


def test_each_venues_documented_shapes_and_limits(sim: RunningSim) -> None:
    def get(url: str) -> requests.Response:
        return requests.get(f"{sim.url}/{url}", timeout=10)

    bad = get("binance/api/v3/ticker/24hr?symbol=ADAUSDT")
    assert (bad.status_code, bad.json()) == (400, {"code": -1121, "msg": "Invalid symbol."})
    klines = get("binance/api/v3/klines?symbol=BTCUSDT&interval=1h&limit=3").json()
    assert len(klines) == 3 and klines[0][0] < klines[1][0] and len(klines[0]) == 12 and klines[0][6] == \
        klines[0][0] + HOUR - 1
    bybit = get("bybit/v5/market/kline?category=spot&symbol=BTCUSDT&interval=60&limit=3").json()["result"]["list"]
    assert int(bybit[0][0]) > int(bybit[1][0]), "Bybit sorts in reverse by start time"
    start = (now_ms() - 400 * HOUR) // 1000
    too_many = get(f"coinbase/api/v3/brokerage/market/products/BTC-USD/candles?start={start}&end={start + 400 * 3600}"
                   "&granularity=ONE_HOUR")
    assert too_many.status_code == 400 and too_many.json()["error"] == "INVALID_ARGUMENT"
    kucoin = get("kucoin/api/v1/market/candles?symbol=BTC-USDT&type=1hour").json()["data"]
    opened, first, close, high, low = int(kucoin[1][0]) * 1000, *(Decimal(x) for x in kucoin[1][1:5])
    candle = sim.app.state.prices.candle("kucoin", "BTC", "USDT", opened, HOUR, now_ms())
    assert (first, close, high, low) == (candle.open, candle.close, candle.high, candle.low), "open, close, high, low"
    gemini = get("gemini/v2/candles/btcusd/1hr")
    assert gemini.text.startswith("[[") and '"' not in gemini.text[:80], "Gemini sends JSON numbers"
    okx = get("okx/api/v5/market/history-candles?instId=BTC-USDT&bar=1H&limit=101")
    assert okx.status_code == 400 and okx.json()["code"] == "51000"


def test_an_outage_takes_the_market_data_down_too(sim: RunningSim, registry: VenueRegistry) -> None:
    from appliance.errors import VenueTransient

    sim.control("POST", "kraken/faults", {"outage": True})
    with pytest.raises(VenueTransient):
        ExchangeMarketData(registry.get("kraken")).ticker("BTC", "USD")  # type: ignore[arg-type]
