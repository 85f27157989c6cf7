"""Public market data the appliance prices with: exchange tickers and candles, prediction markets' own prices.

Only sources the appliance may already reach, through the same egress layer and per-venue request budget
as the syncs, and only their public, unauthenticated market-data endpoints:

- Exchanges go through ccxt (``fetch_ticker``, ``fetch_ohlcv``) on a client built *without* credentials
  whose egress session allows nothing but the venue's market-data paths (``MARKET_DATA_ENDPOINTS``): a
  signed endpoint cannot be reached from here even by mistake, and what leaves is a pair symbol and a
  time range — never an employee, an address or a key. The client is told to hand numbers over as the
  strings the venue sent (``number = str``), so prices stay exact Decimals.
- Prediction markets: Kalshi's public market record and Polymarket's Gamma market (each outcome's price),
  through the adapters' own public calls.

Nothing here touches the store; the pricing service decides what to ask and records what came back.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from appliance.errors import VenueBadData
from appliance.venues import egress
from appliance.venues.ccxt_base import CcxtAdapter, to_decimal
from appliance.venues.egress import EndpointRule
from appliance.venues.ratelimits import RateLimit

# The public market-data paths of each exchange, as ccxt 4.5.90 calls them for fetch_ticker / fetch_ohlcv.
MARKET_DATA_ENDPOINTS: dict[str, tuple[EndpointRule, ...]] = {
    "binance": egress.read("GET", r"/api/v3/ticker/24hr", r"/api/v3/klines"),
    "binanceus": egress.read("GET", r"/api/v3/ticker/24hr", r"/api/v3/klines"),
    "bybit": egress.read("GET", r"/v5/market/tickers", r"/v5/market/kline"),
    "coinbase": egress.read("GET", r"/api/v3/brokerage/market/products/[A-Za-z0-9]+-[A-Za-z0-9]+/(ticker|candles)"),
    "kraken": egress.read("GET", r"/0/public/(Ticker|OHLC)"),
    "gemini": egress.read("GET", r"/v1/pubticker/[a-z0-9]+", r"/v2/candles/[a-z0-9]+/[0-9a-z]+"),
    "okx": egress.read("GET", r"/api/v5/market/(ticker|candles|history-candles)"),
    "kucoin": egress.read("GET", r"/api/v1/market/(stats|candles)"),
    "bitstamp": egress.read("GET", r"/api/v2/(ticker|ohlc)/[a-z0-9]+/"),
}
# The venues' documented limits on those paths where the adapter's own limits (``rate_limits``, which apply
# to market data too) do not cover them: per IP, each endpoint as its page states. (Binance, Binance.US and
# Bybit count every request in one per-IP window; Coinbase, Kraken and Bitstamp declare their public limits.)
MARKET_DATA_LIMITS: dict[str, tuple[RateLimit, ...]] = {
    "okx": (
        RateLimit(20, 2, path=r"/api/v5/market/ticker",
                  source="https://www.okx.com/docs-v5/en/#order-book-trading-market-data-get-ticker"),
        RateLimit(40, 2, path=r"/api/v5/market/candles",
                  source="https://www.okx.com/docs-v5/en/#order-book-trading-market-data-get-candlesticks"),
        RateLimit(20, 2, path=r"/api/v5/market/history-candles",
                  source="https://www.okx.com/docs-v5/en/#order-book-trading-market-data-get-candlesticks-history"),
    ),
    # The Public pool: 2,000 weight per 30 s per IP; 24-hour stats weigh 15, klines 3.
    "kucoin": (RateLimit(2000, 30, path=r"/api/v1/market/(stats|candles)",
                         weights=((r"/api/v1/market/stats", 15), (r"/api/v1/market/candles", 3)),
                         source="https://www.kucoin.com/docs-new/rate-limit"),),
    # Public endpoints: 120 requests a minute.
    "gemini": (RateLimit(120, 60, path=r"/v1/pubticker/.*|/v2/candles/.*",
                         source="https://docs.gemini.com/rest-api/#rate-limits"),),
}
# Candles one request returns at most (the venue's documented maximum, or ccxt's where it is lower).
CANDLES_PER_REQUEST: dict[str, int] = {
    "binance": 1000, "binanceus": 1000, "bybit": 1000, "coinbase": 300, "kraken": 720, "gemini": 1440, "okx": 100,
    "kucoin": 1500, "bitstamp": 1000,
}
MAX_CANDLE_PAGES = 30  # per asked range; a venue that keeps answering the same page is not asked forever


@dataclass(frozen=True)
class Tick:
    """A venue's current price of base in quote."""

    venue: str
    base: str
    quote: str
    price: Decimal
    at: dt.datetime


@dataclass(frozen=True)
class Bar:
    """One candle: it covers [open_at, open_at + timeframe); ``close`` is the price we use."""

    open_at: dt.datetime
    close: Decimal


def _utc_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms // 1000, dt.UTC) + dt.timedelta(milliseconds=ms % 1000)


def _ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


class ExchangeMarketData:
    """One exchange's public tickers and candles, through a credential-less ccxt client."""

    def __init__(self, adapter: CcxtAdapter) -> None:
        if adapter.id not in MARKET_DATA_ENDPOINTS:
            raise ValueError(f"no market-data endpoints known for {adapter.id}")
        self.adapter = adapter
        self.id = adapter.id
        self._local = threading.local()

    @property
    def endpoints(self) -> tuple[EndpointRule, ...]:
        return MARKET_DATA_ENDPOINTS[self.id]

    @property
    def limits(self) -> tuple[RateLimit, ...]:
        """The documented limits a market-data request spends (applied unless venues.<id>.requests_per_second
        sets a budget): the venue's per-IP limits, and those of its market-data endpoints."""
        return (*self.adapter.rate_limits, *MARKET_DATA_LIMITS.get(self.id, ()))

    def client(self) -> Any:
        """This thread's credential-less ccxt client, its session limited to the market-data paths."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self.adapter.new_client(None)
            client.set_markets_from_exchange(self.adapter.markets())
            # Market data only: this session refuses every other path, signed ones included.
            client.session = self.adapter.egress.session(self.id, self.adapter.hosts, self.endpoints, self.limits)
            client.number = str  # the venue's decimal strings, untouched
            self._local.client = client
        return client

    def pairs(self) -> frozenset[tuple[str, str]]:
        """(base, quote) of every active spot market the venue lists (its markets, loaded once per process)."""
        markets = self.adapter.markets().markets or {}
        return frozenset((str(m["base"]), str(m["quote"])) for m in markets.values()
                         if m.get("spot", True) and m.get("active") is not False and m.get("base") and m.get("quote"))

    def ticker(self, base: str, quote: str) -> Tick:
        client = self.client()
        raw = self.adapter.call(client.fetch_ticker, f"{base}/{quote}", creds=None)
        price = to_decimal(raw.get("last")) or to_decimal(raw.get("close"))
        if price is None:
            bid, ask = to_decimal(raw.get("bid")), to_decimal(raw.get("ask"))
            price = (bid + ask) / 2 if bid and ask else None
        if price is None or price <= 0:
            raise VenueBadData(self.id, f"the {base}/{quote} ticker carries no price")
        stamp = raw.get("timestamp")
        at = _utc_ms(int(stamp)) if stamp else dt.datetime.now(dt.UTC)
        return Tick(self.id, base, quote, price, at)

    def candles(self, base: str, quote: str, timeframe: str, start: dt.datetime, end: dt.datetime) -> list[Bar]:
        """The candles whose open time lies in [start, end), oldest first (as many as the venue serves)."""
        client = self.client()
        step = int(client.parse_timeframe(timeframe)) * 1000
        start_ms, end_ms = _ms(start), _ms(end)
        limit = min(CANDLES_PER_REQUEST.get(self.id, 500), max(1, -(-(end_ms - start_ms) // step)))
        found: dict[int, Decimal] = {}
        since = start_ms
        for _ in range(MAX_CANDLE_PAGES):
            rows = self.adapter.call(client.fetch_ohlcv, f"{base}/{quote}", timeframe, since, limit, creds=None)
            fresh = 0
            newest = None
            for row in rows or []:
                opened = int(row[0])
                newest = opened if newest is None else max(newest, opened)
                close = to_decimal(row[4])
                if start_ms <= opened < end_ms and opened not in found and close is not None and close > 0:
                    found[opened] = close
                    fresh += 1
            if newest is None or not fresh or newest + step >= end_ms:
                break
            since = newest + step
        return [Bar(_utc_ms(ms), found[ms]) for ms in sorted(found)]


@dataclass(frozen=True)
class OutcomePrice:
    """A prediction market's own price of one outcome (per share or contract, in ``currency``)."""

    venue: str
    market_id: str
    outcome: str
    price: Decimal
    currency: str
    at: dt.datetime


def kalshi_prices(adapter: Any, wanted: Iterable[tuple[str, str]]) -> dict[tuple[str, str], OutcomePrice]:
    """Kalshi: (ticker, outcome) -> price from the public market record (``KalshiAdapter.outcome_price``)."""
    out: dict[tuple[str, str], OutcomePrice] = {}
    now = dt.datetime.now(dt.UTC)
    for ticker, outcome in sorted(set(wanted)):
        price = adapter.outcome_price(ticker, outcome)
        if price is not None:
            out[(ticker, outcome)] = OutcomePrice("kalshi", ticker, outcome, price, "USD", now)
    return out


def polymarket_prices(adapter: Any, wanted: Iterable[tuple[str, str]]) -> dict[tuple[str, str], OutcomePrice]:
    """Polymarket: (condition id, outcome) -> price from Gamma's market (``PolymarketAdapter.outcome_prices``)."""
    pairs = set(wanted)
    found: Mapping[tuple[str, str], Decimal] = adapter.outcome_prices({c for c, _o in pairs})
    now = dt.datetime.now(dt.UTC)
    return {key: OutcomePrice("polymarket", key[0], key[1], found[key], "USDC", now) for key in pairs if key in found}
