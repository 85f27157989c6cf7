"""Public market data of every simulated exchange: tickers and candles, in each venue's documented format.

Kept apart from the venue modules on purpose: these endpoints are public (no key, no signature), share
one price path (``prices.PricePath``: one asset, one price within a spread across venues), and are
answered before the venue's own handler, after the fault injection (an outage takes them down too).
Each function below cites the venue's documentation page it follows; what the docs leave open is
marked as an assumption.

- Binance / Binance.US — https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints
  (``rest-api.md`` in github.com/binance/binance-spot-api-docs): ``GET /api/v3/ticker/24hr`` (FULL),
  ``GET /api/v3/klines`` (``startTime``/``endTime`` in ms, ``limit`` default 500, max 1000; a kline is
  ``[openTime, "open", "high", "low", "close", "volume", closeTime, "quoteVolume", trades, "takerBase",
  "takerQuote", "0"]``, oldest first); an unknown symbol is HTTP 400 ``{"code": -1121, "msg": "Invalid symbol."}``.
- Bybit v5 — https://bybit-exchange.github.io/docs/v5/market/tickers and /v5/market/kline: ``category``
  (spot), ``symbol``; kline ``interval`` 1…720/D/W/M, ``start``/``end`` ms, ``limit`` [1, 1000] default
  200, the list sorted in reverse by start time, candles as string arrays.
- Coinbase Advanced Trade — https://docs.cdp.coinbase.com/api-reference/advanced-trade-api/rest-api/public/
  get-public-market-trades (``/market/products/{id}/ticker``: ``trades``, ``best_bid``, ``best_ask``) and
  get-public-product-candles (``start``/``end`` UNIX seconds as strings, ``granularity`` ONE_MINUTE…ONE_DAY,
  at most 350 buckets, newest first, each ``{"start", "low", "high", "open", "close", "volume"}``).
- Kraken — https://docs.kraken.com/api-reference/market-data/get-ticker-information and
  get-ohlc-data: ``pair`` by id or altname, the result keyed by the pair id; OHLC ``interval`` in minutes,
  ``since`` in seconds (entries after it), *up to 720 of the most recent entries — older data cannot be
  retrieved, regardless of since*; the last entry is the current, not-yet-committed frame; ``last`` is the
  last committed frame's time. Rows are ``[time, "open", "high", "low", "close", "vwap", "volume", count]``.
- Gemini — https://docs.gemini.com/rest/market-data (``GET /v1/pubticker/:symbol``: ``bid``, ``ask``,
  ``last``, ``volume`` with ``timestamp`` in ms; ``GET /v2/candles/:symbol/:time_frame`` with time frames
  1m, 5m, 15m, 30m, 1hr, 6hr, 1day: ``[time ms, open, high, low, close, volume]`` as JSON numbers, newest
  first). The endpoint takes no time range; how far back it reaches is not documented — assumption: the
  most recent 1,440 candles.
- OKX — https://www.okx.com/docs-v5/en/#order-book-trading-market-data-get-ticker and -get-candlesticks,
  -get-candlesticks-history: ``instId``; ``after`` (records older than, ms) / ``before`` (newer than);
  ``bar`` 1m…1H…1Dutc (default 1m); ``limit`` at most 300 (candles, the most recent 1,440 bars) or 100
  (history); rows ``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]`` newest first.
- KuCoin — https://www.kucoin.com/docs-new/rest/spot-trading/market-data/get-24hr-stats and get-klines:
  ``type`` 1min…1week, ``startAt``/``endAt`` in seconds, at most 1,500 rows, newest first, each
  ``[time, open, close, high, low, volume, turnover]`` (close before high and low, as documented).
- Bitstamp — https://www.bitstamp.net/api/#tag/Market-info (``GET /api/v2/ticker/{market_symbol}/``,
  ``GET /api/v2/ohlc/{market_symbol}/`` with ``step`` in seconds, ``limit`` 1…1000 required, ``start``/``end``
  seconds; ``{"data": {"pair", "ohlc": [{"timestamp", "open", "high", "low", "close", "volume"}]}}``, oldest
  first).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from appliance.sim.core import Request, Response, VenueError, VenueSim, fmt, now_ms
from appliance.sim.prices import Candle, PricePath

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR

Pair = tuple[str, str]
Handler = Callable[[VenueSim, PricePath, Request, dict[str, str]], Response | None]


def answer(venue: VenueSim, prices: PricePath, req: Request) -> Response | None:
    """The venue's public market-data answer to ``req``, or None when it is not a market-data request."""
    handler = HANDLERS.get(venue.id)
    if handler is None or req.method != "GET":
        return None
    params = dict(parse_qsl(req.query, keep_blank_values=True))
    return handler(venue, prices, req, params)


# -- shared helpers -------------------------------------------------------------------------------------

def lookup(venue: VenueSim, symbol: str, render: Callable[[str, str], str]) -> Pair | None:
    for base, quote in venue.listed_markets():
        if render(base, quote) == symbol:
            return base, quote
    return None


def window(prices: PricePath, venue: VenueSim, pair: Pair, step: int, *, start: int | None, end: int | None,
           limit: int, newest: bool) -> list[Candle]:
    """Up to ``limit`` candles of ``step`` ms between ``start`` and ``end`` (open times, inclusive): the oldest
    ones from ``start`` when only it is given (``newest`` False), else the most recent before ``end``."""
    now = now_ms()
    end = now if end is None else min(end, now)
    if start is not None and not newest:
        first = -(-start // step) * step
        last = min(end, first + (limit - 1) * step)
        return prices.candles(venue.id, *pair, step, first, last, now)
    last = end // step * step
    first = last - (limit - 1) * step
    if start is not None:
        first = max(first, -(-start // step) * step)
    return prices.candles(venue.id, *pair, step, first, last, now) if first <= last else []


def integer(params: dict[str, str], name: str) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None


def spread(price: Decimal) -> tuple[Decimal, Decimal]:
    """Bid and ask one basis point either side of the last price."""
    return (price * Decimal("0.9999")).normalize(), (price * Decimal("1.0001")).normalize()


def json_numbers(value: Any) -> str:
    """JSON with Decimals written as JSON numbers, digit for digit (for venues that send numbers)."""
    if isinstance(value, Decimal):
        return fmt(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{json_numbers(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(json_numbers(v) for v in value) + "]"
    return json.dumps(value)


def day_stats(prices: PricePath, venue: VenueSim, pair: Pair) -> dict[str, Decimal]:
    now = now_ms()
    day = prices.candles(venue.id, *pair, HOUR, now - DAY + HOUR, now, now)
    last = prices.price(venue.id, *pair, now)
    return {"open": day[0].open if day else last, "high": max(c.high for c in day) if day else last,
            "low": min(c.low for c in day) if day else last, "last": last,
            "volume": sum((c.volume for c in day), Decimal(0))}


# -- Binance and Binance.US -------------------------------------------------------------------------------

BINANCE_INTERVALS = {"1m": MINUTE, "3m": 3 * MINUTE, "5m": 5 * MINUTE, "15m": 15 * MINUTE, "30m": 30 * MINUTE,
                     "1h": HOUR, "2h": 2 * HOUR, "4h": 4 * HOUR, "6h": 6 * HOUR, "8h": 8 * HOUR, "12h": 12 * HOUR,
                     "1d": DAY, "3d": 3 * DAY}


def binance(venue: VenueSim, prices: PricePath, req: Request, params: dict[str, str]) -> Response | None:
    if req.path not in ("/api/v3/ticker/24hr", "/api/v3/klines"):
        return None

    def fail(code: int, msg: str) -> VenueError:
        return VenueError(400, {"code": code, "msg": msg})

    symbol = params.get("symbol", "")
    if req.path == "/api/v3/ticker/24hr" and not symbol:
        return Response(200, [binance_ticker(venue, prices, p) for p in venue.listed_markets()])
    if not symbol:
        raise fail(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
    pair = lookup(venue, symbol, lambda b, q: b + q)
    if pair is None:
        raise fail(-1121, "Invalid symbol.")
    if req.path == "/api/v3/ticker/24hr":
        return Response(200, binance_ticker(venue, prices, pair))
    step = BINANCE_INTERVALS.get(params.get("interval", ""))
    if step is None:
        raise fail(-1120, "Invalid interval.")
    limit = integer(params, "limit") or 500
    if not 1 <= limit <= 1000:
        raise fail(-1130, "Invalid data sent for a parameter.")
    start, end = integer(params, "startTime"), integer(params, "endTime")
    rows = window(prices, venue, pair, step, start=start, end=end, limit=limit, newest=start is None)
    return Response(200, [[c.open_ms, fmt(c.open), fmt(c.high), fmt(c.low), fmt(c.close), fmt(c.volume),
                           c.open_ms + step - 1, fmt(c.volume * c.close), 100, fmt(c.volume / 2),
                           fmt(c.volume * c.close / 2), "0"] for c in rows])


def binance_ticker(venue: VenueSim, prices: PricePath, pair: Pair) -> dict[str, Any]:
    stats = day_stats(prices, venue, pair)
    bid, ask = spread(stats["last"])
    now = now_ms()
    return {
        "symbol": pair[0] + pair[1], "priceChange": fmt(stats["last"] - stats["open"]),
        "priceChangePercent": fmt(((stats["last"] - stats["open"]) / stats["open"] * 100).quantize(Decimal("0.001"))),
        "weightedAvgPrice": fmt(stats["last"]), "prevClosePrice": fmt(stats["open"]), "lastPrice": fmt(stats["last"]),
        "lastQty": "0.01000000", "bidPrice": fmt(bid), "bidQty": "1.00000000", "askPrice": fmt(ask),
        "askQty": "1.00000000", "openPrice": fmt(stats["open"]), "highPrice": fmt(stats["high"]),
        "lowPrice": fmt(stats["low"]), "volume": fmt(stats["volume"]),
        "quoteVolume": fmt(stats["volume"] * stats["last"]),
        "openTime": now - DAY, "closeTime": now, "firstId": 1, "lastId": 100, "count": 100,
    }


# -- Bybit v5 --------------------------------------------------------------------------------------------

BYBIT_INTERVALS = {"1": MINUTE, "3": 3 * MINUTE, "5": 5 * MINUTE, "15": 15 * MINUTE, "30": 30 * MINUTE,
                   "60": HOUR, "120": 2 * HOUR, "240": 4 * HOUR, "360": 6 * HOUR, "720": 12 * HOUR, "D": DAY}


def bybit(venue: VenueSim, prices: PricePath, req: Request, params: dict[str, str]) -> Response | None:
    if req.path not in ("/v5/market/tickers", "/v5/market/kline"):
        return None

    def envelope(result: Any, code: int = 0, msg: str = "OK") -> Response:
        return Response(200, {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": now_ms()})

    category = params.get("category", "linear" if req.path == "/v5/market/kline" else "")
    if category not in ("spot", "linear", "inverse", "option"):
        return envelope({}, 10001, "params error: category is invalid")
    symbol = params.get("symbol", "")
    pair = lookup(venue, symbol, lambda b, q: b + q) if category == "spot" else None
    if req.path == "/v5/market/tickers":
        if symbol and pair is None:
            return envelope({}, 10001, "Not supported symbols")
        pairs = [pair] if pair else (list(venue.listed_markets()) if category == "spot" else [])
        tickers = []
        for p in pairs:
            if p is None:
                continue
            stats = day_stats(prices, venue, p)
            bid, ask = spread(stats["last"])
            tickers.append({"symbol": p[0] + p[1], "bid1Price": fmt(bid), "bid1Size": "1", "ask1Price": fmt(ask),
                         "ask1Size": "1", "lastPrice": fmt(stats["last"]), "prevPrice24h": fmt(stats["open"]),
                         "price24hPcnt": fmt(((stats["last"] - stats["open"]) / stats["open"]).quantize(
                             Decimal("0.0001"))),
                         "highPrice24h": fmt(stats["high"]), "lowPrice24h": fmt(stats["low"]),
                         "turnover24h": fmt(stats["volume"] * stats["last"]), "volume24h": fmt(stats["volume"]),
                         "usdIndexPrice": ""})
        return envelope({"category": category, "list": tickers})
    if pair is None:
        return envelope({}, 10001, "Not supported symbols")
    step = BYBIT_INTERVALS.get(params.get("interval", ""))
    if step is None:
        return envelope({}, 10001, "Invalid period!")
    limit = integer(params, "limit") or 200
    if not 1 <= limit <= 1000:
        return envelope({}, 10001, "params error: limit is invalid")
    start, end = integer(params, "start"), integer(params, "end")
    rows = window(prices, venue, pair, step, start=start, end=end, limit=limit, newest=end is not None or start is None)
    return envelope({"symbol": symbol, "category": category, "list": [
        [str(c.open_ms), fmt(c.open), fmt(c.high), fmt(c.low), fmt(c.close), fmt(c.volume), fmt(c.volume * c.close)]
        for c in reversed(rows)]})


# -- Coinbase Advanced Trade -----------------------------------------------------------------------------

COINBASE_GRANULARITY = {"ONE_MINUTE": MINUTE, "FIVE_MINUTE": 5 * MINUTE, "FIFTEEN_MINUTE": 15 * MINUTE,
                        "THIRTY_MINUTE": 30 * MINUTE, "ONE_HOUR": HOUR, "TWO_HOUR": 2 * HOUR, "SIX_HOUR": 6 * HOUR,
                        "ONE_DAY": DAY}
COINBASE_PREFIX = "/api/v3/brokerage/market/products/"


def coinbase(venue: VenueSim, prices: PricePath, req: Request, params: dict[str, str]) -> Response | None:
    if not req.path.startswith(COINBASE_PREFIX):
        return None
    parts = req.path[len(COINBASE_PREFIX):].split("/")
    if len(parts) != 2 or parts[1] not in ("ticker", "candles"):
        return None

    def fail(status: int, code: str, message: str) -> VenueError:
        return VenueError(status, {"error": code, "error_details": message, "message": message})

    pair = lookup(venue, parts[0], lambda b, q: f"{b}-{q}")
    if pair is None:
        raise fail(404, "NOT_FOUND", "ProductID is invalid")
    now = now_ms()
    if parts[1] == "ticker":
        last = prices.price(venue.id, *pair, now)
        bid, ask = spread(last)
        when = dt.datetime.fromtimestamp(now / 1000, dt.UTC).isoformat().replace("+00:00", "Z")
        return Response(200, {"trades": [{"trade_id": str(now), "product_id": parts[0], "price": fmt(last),
                                          "size": "0.01", "time": when, "side": "BUY", "exchange": "CBE"}],
                              "best_bid": fmt(bid), "best_ask": fmt(ask)})
    step = COINBASE_GRANULARITY.get(params.get("granularity", ""))
    start, end = integer(params, "start"), integer(params, "end")
    if step is None or start is None or end is None:
        raise fail(400, "INVALID_ARGUMENT", "start, end and a valid granularity are required")
    count = (end - start) * 1000 // step
    if count > 350:
        raise fail(400, "INVALID_ARGUMENT", "number of candles requested should be less than or equal to 350")
    rows = prices.candles(venue.id, *pair, step, start * 1000, end * 1000, now)
    return Response(200, {"candles": [{"start": str(c.open_ms // 1000), "low": fmt(c.low), "high": fmt(c.high),
                                       "open": fmt(c.open), "close": fmt(c.close), "volume": fmt(c.volume)}
                                      for c in reversed(rows)]})


# -- Kraken ----------------------------------------------------------------------------------------------

KRAKEN_INTERVALS = {1, 5, 15, 30, 60, 240, 1440, 10080, 21600}
KRAKEN_WINDOW = 720


def kraken(venue: VenueSim, prices: PricePath, req: Request, params: dict[str, str]) -> Response | None:
    if req.path not in ("/0/public/Ticker", "/0/public/OHLC"):
        return None
    from appliance.sim.venues.kraken import pair_ids

    ids = pair_ids(venue)
    wanted = params.get("pair", "")
    found = next(((pair, pid) for pair, (pid, alt) in ids.items() if wanted in (pid, alt)), None)
    if found is None:
        return Response(200, {"error": ["EQuery:Unknown asset pair"]})
    pair, pair_id = found
    now = now_ms()
    if req.path == "/0/public/Ticker":
        stats = day_stats(prices, venue, pair)
        bid, ask = spread(stats["last"])
        volume = fmt(stats["volume"])
        return Response(200, {"error": [], "result": {pair_id: {
            "a": [fmt(ask), "1", "1.000"], "b": [fmt(bid), "1", "1.000"], "c": [fmt(stats["last"]), "0.01000000"],
            "v": [volume, volume], "p": [fmt(stats["last"]), fmt(stats["last"])], "t": [100, 100],
            "l": [fmt(stats["low"]), fmt(stats["low"])], "h": [fmt(stats["high"]), fmt(stats["high"])],
            "o": fmt(stats["open"])}}})
    minutes = integer(params, "interval") or 1
    if minutes not in KRAKEN_INTERVALS:
        return Response(200, {"error": ["EGeneral:Invalid arguments:interval"]})
    step = minutes * MINUTE
    rows = window(prices, venue, pair, step, start=None, end=None, limit=KRAKEN_WINDOW, newest=True)
    since = integer(params, "since")
    if since is not None:
        rows = [c for c in rows if c.open_ms // 1000 > since]
    committed = now // step * step - step
    return Response(200, {"error": [], "result": {pair_id: [
        [c.open_ms // 1000, fmt(c.open), fmt(c.high), fmt(c.low), fmt(c.close), fmt(c.close), fmt(c.volume), 10]
        for c in rows], "last": committed // 1000}})


# -- Gemini ----------------------------------------------------------------------------------------------

GEMINI_FRAMES = {"1m": MINUTE, "5m": 5 * MINUTE, "15m": 15 * MINUTE, "30m": 30 * MINUTE, "1hr": HOUR,
                 "6hr": 6 * HOUR, "1day": DAY}
GEMINI_DEPTH = 1440  # assumption: the docs do not say how far back /v2/candles reaches


def gemini(venue: VenueSim, prices: PricePath, req: Request, params: dict[str, str]) -> Response | None:
    parts = req.path.strip("/").split("/")
    if not ((len(parts) == 3 and parts[:2] == ["v1", "pubticker"])
            or (len(parts) == 4 and parts[:2] == ["v2", "candles"])):
        return None
    pair = lookup(venue, parts[2].lower(), lambda b, q: f"{b}{q}".lower())
    if pair is None:
        raise VenueError(400, {"result": "error", "reason": "InvalidSymbol",
                               "message": f"Supplied value '{parts[2]}' is not a valid symbol"})
    now = now_ms()
    if parts[0] == "v1":
        last = prices.price(venue.id, *pair, now)
        bid, ask = spread(last)
        volume = day_stats(prices, venue, pair)["volume"]
        return Response(200, {"bid": fmt(bid), "ask": fmt(ask), "last": fmt(last),
                              "volume": {pair[0]: fmt(volume), pair[1]: fmt(volume * last), "timestamp": now}})
    step = GEMINI_FRAMES.get(parts[3])
    if step is None:
        raise VenueError(400, {"result": "error", "reason": "InvalidTimeFrame",
                               "message": f"Supplied value '{parts[3]}' is not a valid time frame"})
    rows = window(prices, venue, pair, step, start=None, end=None, limit=GEMINI_DEPTH, newest=True)
    body = [[c.open_ms, c.open, c.high, c.low, c.close, c.volume] for c in reversed(rows)]
    return Response(200, json_numbers(body))


# -- OKX -------------------------------------------------------------------------------------------------

OKX_BARS = {"1m": MINUTE, "3m": 3 * MINUTE, "5m": 5 * MINUTE, "15m": 15 * MINUTE, "30m": 30 * MINUTE,
            "1H": HOUR, "2H": 2 * HOUR, "4H": 4 * HOUR, "6Hutc": 6 * HOUR, "12Hutc": 12 * HOUR, "1Dutc": DAY}
OKX_RECENT = 1440


def okx(venue: VenueSim, prices: PricePath, req: Request, params: dict[str, str]) -> Response | None:
    paths = ("/api/v5/market/ticker", "/api/v5/market/candles", "/api/v5/market/history-candles")
    if req.path not in paths:
        return None

    def ok(data: list[Any]) -> Response:
        return Response(200, {"code": "0", "msg": "", "data": data})

    def fail(code: str, msg: str) -> Response:
        return Response(400, {"code": code, "msg": msg, "data": []})

    pair = lookup(venue, params.get("instId", ""), lambda b, q: f"{b}-{q}")
    if pair is None:
        return fail("51001", "Instrument ID doesn't exist.")
    now = now_ms()
    if req.path == "/api/v5/market/ticker":
        stats = day_stats(prices, venue, pair)
        bid, ask = spread(stats["last"])
        return ok([{"instType": "SPOT", "instId": f"{pair[0]}-{pair[1]}", "last": fmt(stats["last"]), "lastSz": "0.01",
                    "askPx": fmt(ask), "askSz": "1", "bidPx": fmt(bid), "bidSz": "1", "open24h": fmt(stats["open"]),
                    "high24h": fmt(stats["high"]), "low24h": fmt(stats["low"]),
                    "volCcy24h": fmt(stats["volume"] * stats["last"]),
                    "vol24h": fmt(stats["volume"]), "ts": str(now), "sodUtc0": fmt(stats["open"]),
                    "sodUtc8": fmt(stats["open"])}])
    step = OKX_BARS.get(params.get("bar") or "1m")
    if step is None:
        return fail("51000", "Parameter bar error")
    history = req.path.endswith("history-candles")
    maximum = 100 if history else 300
    limit = integer(params, "limit") or maximum
    if not 1 <= limit <= maximum:
        return fail("51000", "Parameter limit error")
    after, before = integer(params, "after"), integer(params, "before")
    end = after - 1 if after is not None else None
    start = before + 1 if before is not None else None
    rows = window(prices, venue, pair, step, start=start, end=end, limit=limit, newest=True)
    if not history:
        oldest = now // step * step - (OKX_RECENT - 1) * step
        rows = [c for c in rows if c.open_ms >= oldest]
    return ok([[str(c.open_ms), fmt(c.open), fmt(c.high), fmt(c.low), fmt(c.close), fmt(c.volume),
                fmt(c.volume * c.close), fmt(c.volume * c.close), "1" if c.open_ms + step <= now else "0"]
               for c in reversed(rows)])


# -- KuCoin ----------------------------------------------------------------------------------------------

KUCOIN_TYPES = {"1min": MINUTE, "3min": 3 * MINUTE, "5min": 5 * MINUTE, "15min": 15 * MINUTE, "30min": 30 * MINUTE,
                "1hour": HOUR, "2hour": 2 * HOUR, "4hour": 4 * HOUR, "6hour": 6 * HOUR, "8hour": 8 * HOUR,
                "12hour": 12 * HOUR, "1day": DAY, "1week": 7 * DAY}
KUCOIN_MAX = 1500


def kucoin(venue: VenueSim, prices: PricePath, req: Request, params: dict[str, str]) -> Response | None:
    if req.path not in ("/api/v1/market/stats", "/api/v1/market/candles"):
        return None
    pair = lookup(venue, params.get("symbol", ""), lambda b, q: f"{b}-{q}")
    if pair is None:
        return Response(200, {"code": "900001", "msg": "symbol not exists"})
    now = now_ms()
    if req.path == "/api/v1/market/stats":
        stats = day_stats(prices, venue, pair)
        bid, ask = spread(stats["last"])
        return Response(200, {"code": "200000", "data": {
            "time": now, "symbol": f"{pair[0]}-{pair[1]}", "buy": fmt(bid), "sell": fmt(ask),
            "changeRate": fmt(((stats["last"] - stats["open"]) / stats["open"]).quantize(Decimal("0.0001"))),
            "changePrice": fmt(stats["last"] - stats["open"]), "high": fmt(stats["high"]), "low": fmt(stats["low"]),
            "vol": fmt(stats["volume"]), "volValue": fmt(stats["volume"] * stats["last"]), "last": fmt(stats["last"]),
            "averagePrice": fmt(stats["last"]), "takerFeeRate": "0.001", "makerFeeRate": "0.001",
            "takerCoefficient": "1", "makerCoefficient": "1"}})
    step = KUCOIN_TYPES.get(params.get("type", ""))
    if step is None:
        return Response(200, {"code": "400100", "msg": "type invalid"})
    start, end = integer(params, "startAt"), integer(params, "endAt")
    rows = window(prices, venue, pair, step, start=None if start is None else start * 1000,
                  end=None if end is None else end * 1000, limit=KUCOIN_MAX, newest=True)
    return Response(200, {"code": "200000", "data": [
        [str(c.open_ms // 1000), fmt(c.open), fmt(c.close), fmt(c.high), fmt(c.low), fmt(c.volume),
         fmt(c.volume * c.close)] for c in reversed(rows)]})


# -- Bitstamp --------------------------------------------------------------------------------------------

BITSTAMP_STEPS = {60, 180, 300, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400, 259200}


def bitstamp(venue: VenueSim, prices: PricePath, req: Request, params: dict[str, str]) -> Response | None:
    parts = req.path.strip("/").split("/")
    if len(parts) != 4 or parts[:2] != ["api", "v2"] or parts[2] not in ("ticker", "ohlc"):
        return None
    pair = lookup(venue, parts[3], lambda b, q: f"{b}{q}".lower())
    if pair is None:
        raise VenueError(404, {"status": "error", "reason": "Not found"})
    now = now_ms()
    if parts[2] == "ticker":
        stats = day_stats(prices, venue, pair)
        bid, ask = spread(stats["last"])
        return Response(200, {"timestamp": str(now // 1000), "open": fmt(stats["open"]), "high": fmt(stats["high"]),
                              "low": fmt(stats["low"]), "last": fmt(stats["last"]), "volume": fmt(stats["volume"]),
                              "vwap": fmt(stats["last"]), "bid": fmt(bid), "ask": fmt(ask), "side": "0",
                              "open_24": fmt(stats["open"]), "percent_change_24": "0.00", "market_type": "SPOT"})
    step_s, limit = integer(params, "step"), integer(params, "limit")
    if step_s not in BITSTAMP_STEPS:
        raise VenueError(400, {"status": "error", "reason": {"step": ["Select a valid choice."]}})
    if limit is None or not 1 <= limit <= 1000:
        raise VenueError(400, {"status": "error", "reason": {"limit": ["Ensure this value is between 1 and 1000."]}})
    start, end = integer(params, "start"), integer(params, "end")
    rows = window(prices, venue, pair, step_s * 1000, start=None if start is None else start * 1000,
                  end=None if end is None else end * 1000, limit=limit, newest=start is None)
    if params.get("exclude_current_candle", "").lower() == "true":
        rows = [c for c in rows if c.open_ms + step_s * 1000 <= now]
    return Response(200, {"data": {"pair": f"{pair[0]}/{pair[1]}", "ohlc": [
        {"timestamp": str(c.open_ms // 1000), "open": fmt(c.open), "high": fmt(c.high), "low": fmt(c.low),
         "close": fmt(c.close), "volume": fmt(c.volume)} for c in rows]}})


HANDLERS: dict[str, Handler] = {
    "binance": binance, "binanceus": binance, "bybit": bybit, "coinbase": coinbase, "kraken": kraken,
    "gemini": gemini, "okx": okx, "kucoin": kucoin, "bitstamp": bitstamp,
}
