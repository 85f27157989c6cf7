"""The price sources of one pricing run, over the stored observations.

A ``PriceBook`` answers the route resolver's questions ("does this source price BTC/USD now, or at 10:37?")
from, in this order: what it already fetched in this run; the stored observations (a ticker younger than
``valuation.ticker_max_age_minutes`` is reused, a candle day once fetched is never asked again); and only then
the venue's public market data. So a price asked twice is fetched once, and a day of candles once per pair.

- Current prices: the venue's ticker. If the venue fails, its last stored ticker still counts while it is
  younger than ``valuation.stale_after_hours``; older prices are never used.
- Prices at a time: the close of the candle that contains the time (``valuation.candle_timeframe``). Candles
  are fetched and stored per UTC day; only closed candles are stored, and a time whose candle is still
  forming is priced once it has closed.
- Imported prices (``import`` in the source order; such a leg's source reads ``import:<the file's source>``):
  the latest imported price at or before the time, no older than ``valuation.import_max_gap_hours`` (for a
  current price: ``stale_after_hours``).

Venue calls are made outside any transaction; what they return is written in short transactions of its own.
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import weakref
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.errors import EgressRefused, NotFound, VenueBadData, VenueError
from appliance.services.context import Appliance
from appliance.services.valuation.routes import Leg, SourceFailed
from appliance.settings import EXCHANGE_IDS, PRICE_IMPORT_SOURCE
from appliance.store.base import utcnow
from appliance.store.models import PriceCandleDay, PriceObservation

log = logging.getLogger(__name__)

DAY = dt.timedelta(days=1)
# A venue whose market list could not be loaded is not asked again for this long (an air-gapped site whose
# configuration still lists unreachable venues must not wait for their time-outs on every run).
MARKETS_RETRY = dt.timedelta(minutes=10)
# Per venue registry (one per appliance process): venue -> (not before, why).
_markets_down: weakref.WeakKeyDictionary[Any, dict[str, tuple[dt.datetime, str]]] = weakref.WeakKeyDictionary()
TIMEFRAMES = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "1d": 86400}
WHOLE_SERIES_LIMIT = 200_000  # a cached series this small is read in one query; a larger one day by day


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%MZ")


def insert_ignoring_duplicates(session: Session, model: type[Any], rows: Sequence[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on either database (a price stored once is never rewritten)."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(model).on_conflict_do_nothing(), list(rows))
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(model).on_conflict_do_nothing(), list(rows))


@dataclass
class StoredTicker:
    price: Decimal
    at: dt.datetime
    fetched_at: dt.datetime


@dataclass
class Series:
    """One (source, pair, timeframe) of candles: the days fetched and the closes known, by open time (ms)."""

    days: dict[int, tuple[bool, dt.datetime]] = field(default_factory=dict)  # day ms -> (complete, fetched_at)
    closes: dict[int, Decimal] = field(default_factory=dict)
    loaded_days: set[int] = field(default_factory=set)
    whole: bool = False


@dataclass
class Counters:
    tickers_fetched: int = 0
    candle_days_fetched: int = 0
    market_prices_fetched: int = 0


def _ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms // 1000, dt.UTC)


class PriceBook:
    def __init__(self, app: Appliance, *, now: dt.datetime | None = None) -> None:
        self.app = app
        self.settings = app.settings
        self.valuation = app.settings.valuation
        self.currency = self.valuation.currency
        self.now = now or utcnow()
        self.timeframe = self.valuation.candle_timeframe
        self.step_ms = TIMEFRAMES[self.timeframe] * 1000
        self.counters = Counters()
        self._exchanges: dict[str, Any] = {}
        self._pairs: dict[str, frozenset[tuple[str, str]] | SourceFailed] = {}
        self._ticks: dict[tuple[str, str, str], Leg | SourceFailed] = {}
        self._series: dict[tuple[str, str, str], Series] = {}
        self._imports: dict[tuple[str, str], tuple[list[dt.datetime], list[tuple[Decimal, str]]]] = {}
        self._new_observations: list[dict[str, Any]] = []
        self._down: dict[str, SourceFailed] = {}  # venues that failed in this run
        with app.store.read() as session:
            self._stored = self._load_recent_tickers(session)
            self._import_pairs = {(a, c) for a, c in session.execute(
                select(PriceObservation.asset, PriceObservation.currency).where(
                    PriceObservation.kind == "import").distinct())}

    # -- configuration ----------------------------------------------------------------------------------
    def sources_for(self, asset: str) -> list[str]:
        configured = self.valuation.assets.get(asset)
        order = configured.venues if configured is not None and configured.venues else self.valuation.venues
        if not self.valuation.enabled:
            return []
        return [s for s in order if s == PRICE_IMPORT_SOURCE or (s in EXCHANGE_IDS and self.settings.venue(s).enabled)]

    def exchange(self, venue: str) -> Any:
        """The venue's public market data (built once per run), or None when the venue is not enabled."""
        if venue not in self._exchanges:
            from appliance.venues.marketdata import ExchangeMarketData

            try:
                adapter = self.app.venues.get(venue)
            except NotFound:
                self._exchanges[venue] = None
            else:
                self._exchanges[venue] = ExchangeMarketData(adapter)
        return self._exchanges[venue]

    def pairs(self, venue: str) -> frozenset[tuple[str, str]]:
        known = self._pairs.get(venue)
        if known is None:
            known = self._load_pairs(venue)
            self._pairs[venue] = known
        if isinstance(known, SourceFailed):
            raise known
        return known

    def _load_pairs(self, venue: str) -> frozenset[tuple[str, str]] | SourceFailed:
        market = self.exchange(venue)
        if market is None:
            return frozenset()
        known_down = _markets_down.setdefault(self.app.venues, {})
        down = known_down.get(venue)
        if down is not None and down[0] > self.now:
            return SourceFailed(venue, down[1], transient=True)
        try:
            pairs: frozenset[tuple[str, str]] = market.pairs()
        except EgressRefused as exc:
            return SourceFailed(venue, _venue_reason(exc))
        except VenueError as exc:
            why = f"markets unavailable ({exc.error_class})"
            known_down[venue] = (self.now + MARKETS_RETRY, why)
            return SourceFailed(venue, why, transient=True)
        known_down.pop(venue, None)
        return pairs

    def _venue_down(self, venue: str, exc: VenueError) -> SourceFailed:
        """A venue that failed transiently is not asked again in this run: its failure stands for the rest."""
        failed = SourceFailed(venue, _venue_reason(exc), transient=True)
        if not isinstance(exc, VenueBadData):
            self._down[venue] = failed
        return failed

    # -- current prices -----------------------------------------------------------------------------------
    def current_leg(self, source: str, base: str, quote: str) -> Leg | None:
        if source == PRICE_IMPORT_SOURCE:
            return self.import_leg(base, quote, self.now, dt.timedelta(hours=self.valuation.stale_after_hours))
        pairs = self.pairs(source)
        if (base, quote) in pairs:
            return self.ticker_leg(source, base, quote)
        if (quote, base) in pairs:
            leg = self.ticker_leg(source, quote, base)
            return Leg(base, quote, Decimal(1) / leg.price, source, leg.at, leg.basis, inverted=True)
        return None

    def ticker_leg(self, venue: str, base: str, quote: str) -> Leg:
        key = (venue, base, quote)
        known = self._ticks.get(key)
        if known is None:
            known = self._fetch_ticker(venue, base, quote)
            self._ticks[key] = known
        if isinstance(known, SourceFailed):
            raise known
        return known

    def _fetch_ticker(self, venue: str, base: str, quote: str) -> Leg | SourceFailed:
        stored = self._stored.get((venue, base, quote))
        fresh_after = self.now - dt.timedelta(minutes=self.valuation.ticker_max_age_minutes)
        if stored is not None and stored.fetched_at >= fresh_after:
            return Leg(base, quote, stored.price, venue, stored.at, "ticker")
        usable_after = self.now - dt.timedelta(hours=self.valuation.stale_after_hours)
        try:
            if venue in self._down:
                raise self._down[venue]
            tick = self.exchange(venue).ticker(base, quote)
        except EgressRefused as exc:
            return SourceFailed(venue, _venue_reason(exc))
        except (VenueError, SourceFailed) as exc:
            failed = exc if isinstance(exc, SourceFailed) else self._venue_down(venue, exc)
            if stored is not None and stored.at >= usable_after:
                log.info("pricing: %s unavailable (%s); its ticker from %s stands in", venue, failed.why,
                         iso(stored.at))
                return Leg(base, quote, stored.price, venue, stored.at, "ticker (last known)")
            return failed
        self.counters.tickers_fetched += 1
        self._new_observations.append({"kind": "ticker", "source": venue, "asset": base, "currency": quote,
                                       "timeframe": "", "at": tick.at, "price": tick.price, "fetched_at": self.now})
        return Leg(base, quote, tick.price, venue, tick.at, "ticker")

    def _load_recent_tickers(self, session: Session) -> dict[tuple[str, str, str], StoredTicker]:
        since = self.now - dt.timedelta(hours=self.valuation.stale_after_hours)
        out: dict[tuple[str, str, str], StoredTicker] = {}
        rows = session.execute(select(
            PriceObservation.source, PriceObservation.asset, PriceObservation.currency, PriceObservation.price,
            PriceObservation.at, PriceObservation.fetched_at).where(
            PriceObservation.kind == "ticker", PriceObservation.fetched_at >= since))
        for source, asset, currency, price, at, fetched in rows:
            key = (source, asset, currency)
            if key not in out or fetched > out[key].fetched_at:
                out[key] = StoredTicker(price, at, fetched)
        return out

    # -- prices at a time ---------------------------------------------------------------------------------
    def leg_at(self, source: str, base: str, quote: str, when: dt.datetime) -> Leg | None:
        if source == PRICE_IMPORT_SOURCE:
            return self.import_leg(base, quote, when, dt.timedelta(hours=self.valuation.import_max_gap_hours))
        pairs = self.pairs(source)
        if (base, quote) in pairs:
            close, opened = self.candle_close(source, base, quote, when)
            return Leg(base, quote, close, source, opened, f"candle {self.timeframe}")
        if (quote, base) in pairs:
            close, opened = self.candle_close(source, quote, base, when)
            return Leg(base, quote, Decimal(1) / close, source, opened, f"candle {self.timeframe}", inverted=True)
        return None

    def candle_open(self, when: dt.datetime) -> int:
        return _ms(when) // self.step_ms * self.step_ms

    def candle_close(self, venue: str, base: str, quote: str, when: dt.datetime) -> tuple[Decimal, dt.datetime]:
        """The close of the candle containing ``when`` and its open time; raises SourceFailed saying why not."""
        opened = self.candle_open(when)
        closes_at = opened + self.step_ms
        if closes_at > _ms(self.now):
            raise SourceFailed(venue, f"the {self.timeframe} candle from {iso(_utc(opened))} has not closed yet",
                               retry_at=_utc(closes_at) + dt.timedelta(minutes=1))
        series = self._series_of(venue, base, quote)
        day = opened // 86_400_000 * 86_400_000
        self._load_day(series, venue, base, quote, day)
        if opened not in series.closes:
            marker = series.days.get(day)
            if marker is None or (not marker[0] and _ms(marker[1]) < closes_at):
                self._fetch_day(series, venue, base, quote, day)
        if opened in series.closes:
            return series.closes[opened], _utc(opened)
        raise SourceFailed(venue, f"no {self.timeframe} candle of {base}/{quote} contains {iso(when)}")

    def _series_of(self, venue: str, base: str, quote: str) -> Series:
        key = (venue, base, quote)
        series = self._series.get(key)
        if series is None:
            series = Series()
            with self.app.store.read() as session:
                markers = session.execute(select(PriceCandleDay).where(
                    PriceCandleDay.source == venue, PriceCandleDay.asset == base, PriceCandleDay.currency == quote,
                    PriceCandleDay.timeframe == self.timeframe)).scalars().all()
                for m in markers:
                    series.days[_ms(m.day)] = (m.complete, m.fetched_at)
                if sum(m.candles for m in markers) <= WHOLE_SERIES_LIMIT:
                    series.closes.update(self._closes(session, venue, base, quote, None))
                    series.whole = True
            self._series[key] = series
        return series

    def _closes(self, session: Session, venue: str, base: str, quote: str, day: int | None) -> dict[int, Decimal]:
        stmt = select(PriceObservation.at, PriceObservation.price).where(
            PriceObservation.kind == "candle", PriceObservation.source == venue, PriceObservation.asset == base,
            PriceObservation.currency == quote, PriceObservation.timeframe == self.timeframe)
        if day is not None:
            stmt = stmt.where(PriceObservation.at >= _utc(day), PriceObservation.at < _utc(day) + DAY)
        return {_ms(at): price for at, price in session.execute(stmt)}

    def _load_day(self, series: Series, venue: str, base: str, quote: str, day: int) -> None:
        if series.whole or day in series.loaded_days or day not in series.days:
            return
        with self.app.store.read() as session:
            series.closes.update(self._closes(session, venue, base, quote, day))
        series.loaded_days.add(day)

    def _fetch_day(self, series: Series, venue: str, base: str, quote: str, day: int) -> None:
        start = _utc(day)
        end = min(start + DAY, self.now)
        if venue in self._down:
            raise self._down[venue]
        market = self.exchange(venue)
        try:
            bars = market.candles(base, quote, self.timeframe, start, end)
        except EgressRefused as exc:
            raise SourceFailed(venue, _venue_reason(exc)) from None
        except VenueError as exc:
            raise self._venue_down(venue, exc) from None
        self.counters.candle_days_fetched += 1
        now_ms = _ms(self.now)
        closed = [b for b in bars if _ms(b.open_at) + self.step_ms <= now_ms]
        complete = _ms(start + DAY) <= now_ms
        rows = [{"kind": "candle", "source": venue, "asset": base, "currency": quote, "timeframe": self.timeframe,
                 "at": b.open_at, "price": b.close, "fetched_at": self.now} for b in closed]
        with self.app.store.queued_unit_of_work() as session:
            insert_ignoring_duplicates(session, PriceObservation, rows)
            marker = session.get(PriceCandleDay, (venue, base, quote, self.timeframe, start))
            if marker is None:
                session.add(PriceCandleDay(source=venue, asset=base, currency=quote, timeframe=self.timeframe,
                                           day=start, candles=len(closed), complete=complete, fetched_at=self.now))
            else:
                marker.candles, marker.complete, marker.fetched_at = len(closed), complete, self.now
        for b in closed:
            series.closes[_ms(b.open_at)] = b.close
        series.days[day] = (complete, self.now)
        series.loaded_days.add(day)

    # -- imported prices ----------------------------------------------------------------------------------
    def import_leg(self, base: str, quote: str, when: dt.datetime, max_age: dt.timedelta) -> Leg | None:
        found: list[SourceFailed] = []
        for pair, inverted in (((base, quote), False), ((quote, base), True)):
            if pair not in self._import_pairs:
                continue
            times, values = self._import_series(pair)
            index = bisect.bisect_right(times, when) - 1
            if index < 0 or when - times[index] > max_age:
                hours = int(max_age.total_seconds() // 3600)
                found.append(SourceFailed(PRICE_IMPORT_SOURCE,
                                          f"no imported {pair[0]}/{pair[1]} price in the {hours} h up to {iso(when)}"))
                continue
            price, label = values[index]
            if inverted:
                price = Decimal(1) / price
            return Leg(base, quote, price, label, times[index], "", inverted=inverted)
        if found:
            raise found[0]
        return None

    def _import_series(self, pair: tuple[str, str]) -> tuple[list[dt.datetime], list[tuple[Decimal, str]]]:
        series = self._imports.get(pair)
        if series is None:
            with self.app.store.read() as session:
                rows = session.execute(select(PriceObservation.at, PriceObservation.price, PriceObservation.source)
                                       .where(PriceObservation.kind == "import", PriceObservation.asset == pair[0],
                                              PriceObservation.currency == pair[1])
                                       .order_by(PriceObservation.at, PriceObservation.id)).all()
            series = ([r[0] for r in rows], [(r[1], r[2]) for r in rows])
            self._imports[pair] = series
        return series

    # -- prediction markets -------------------------------------------------------------------------------
    def outcome_prices(self, venue: str, wanted: Iterable[tuple[str, str]]) -> tuple[dict[tuple[str, str], Leg], str]:
        """The markets' own prices of (market id, outcome), as legs in the market's currency, and the reason for
        those missing (empty if none is)."""
        from appliance.venues import marketdata

        keys = set(wanted)
        if not keys:
            return {}, ""
        try:
            adapter = self.app.venues.get(venue)
        except NotFound:
            return {}, f"{venue} is not enabled on this appliance"
        fetch = marketdata.kalshi_prices if venue == "kalshi" else marketdata.polymarket_prices
        try:
            found = fetch(adapter, keys)
        except EgressRefused as exc:
            return {}, f"{venue}: {_venue_reason(exc)}"
        except VenueError as exc:
            return {}, f"{venue}: {_venue_reason(exc)}"
        self.counters.market_prices_fetched += len(found)
        legs: dict[tuple[str, str], Leg] = {}
        for key, quote in found.items():
            asset = outcome_key(venue, *key)
            self._new_observations.append({"kind": "market", "source": venue, "asset": asset,
                                           "currency": quote.currency, "timeframe": "", "at": quote.at,
                                           "price": quote.price, "fetched_at": self.now})
            legs[key] = Leg(f"{key[0]}:{key[1]}", quote.currency, quote.price, venue, quote.at, "market")
        missing = len(keys) - len(legs)
        return legs, (f"{venue} quotes no price for this outcome" if missing else "")

    # -- writing --------------------------------------------------------------------------------------------
    def flush(self, session: Session) -> None:
        """Store the tickers and market prices fetched so far (candles are stored as they are fetched)."""
        insert_ignoring_duplicates(session, PriceObservation, self._new_observations)
        self._new_observations = []


def outcome_key(venue: str, market_id: str, outcome: str) -> str:
    """The price key of one prediction outcome (what ``current_prices.asset`` holds for it)."""
    return f"{venue}:{market_id}:{outcome}"


def _venue_reason(exc: VenueError) -> str:
    text = exc.message.split(": ", 1)[1] if exc.message.startswith(f"{exc.venue}: ") else exc.message
    return text[:200]


def group_by(items: Iterable[tuple[str, Any]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for key, value in items:
        out[key].append(value)
    return out
