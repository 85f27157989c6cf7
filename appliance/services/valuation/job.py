"""The pricing job: a poller job of its own, run after the syncs and never holding one up.

One run, in order:

1. Current prices of every asset held (open balance observations that are not zero), resolved into
   ``valuation.currency`` and stored in ``current_prices`` with their source and route, or the reason there is
   none. A balance's value is its amount times that price, computed when shown.
2. Prediction positions: each open outcome priced from its market's own public price (Kalshi's market record,
   Polymarket's Gamma market), converted from the market's currency (USD, USDC) like any other asset.
3. Transactions not yet valued in the base currency (and unpriced ones whose retry is due): each at its own
   time, from the candle that contains it. Prediction fills are valued at their own price (the market's
   price at that instant), converted at that time. Chain transfers of a token contract the customer did not
   configure are not priced: anyone can deploy a token called USDT, so its symbol proves nothing.
4. Retention: price observations older than ``valuation.retention_days`` (by when they were stored) go.
5. Every employee's holdings valued at the new prices and recorded for the dashboard (valuation/snapshots.py).

A value that cannot be established is stored as unpriced with the reason, and tried again later: soon when a
source failed, when the candle closes when it was still forming, daily when no source lists the asset.
Venue calls happen outside transactions; writes are short transactions queued with the poller's.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from appliance.services.context import Appliance
from appliance.services.valuation.book import Counters, PriceBook, insert_ignoring_duplicates, outcome_key
from appliance.services.valuation.imports import IMPORT_PREFIX as IMPORTED
from appliance.services.valuation.routes import IDENTITY, Leg, Priced, Resolver
from appliance.services.valuation.snapshots import record_values
from appliance.settings import PRICE_IMPORT_SOURCE
from appliance.store.base import utcnow
from appliance.store.models import (
    BalanceSnapshot,
    Connection,
    CurrentPrice,
    PredictionPosition,
    PriceCandleDay,
    PriceObservation,
    Transaction,
    TransactionValue,
)

log = logging.getLogger(__name__)

PREDICTION_VENUES = ("kalshi", "polymarket")
WRITE_BATCH = 2000  # transaction values per write transaction: short, so a sync's write never waits long
RETRY_FIRST = dt.timedelta(minutes=15)
RETRY_MAX = dt.timedelta(hours=6)
RETRY_UNLISTED = dt.timedelta(hours=24)


@dataclass
class PricingResult:
    currency: str
    enabled: bool = True
    assets: int = 0
    assets_unpriced: list[str] = field(default_factory=list)
    positions: int = 0
    positions_unpriced: int = 0
    transactions: int = 0
    transactions_unpriced: int = 0
    transactions_left: bool = False
    observations_pruned: int = 0
    employees_valued: int = 0
    counters: Counters = field(default_factory=Counters)

    def lines(self) -> list[str]:
        if not self.enabled:
            return ["valuation is turned off (valuation.enabled: false): nothing was priced"]
        out = [f"current prices in {self.currency}: {self.assets - len(self.assets_unpriced)} of {self.assets} "
               f"asset(s) priced" + (f" (unpriced: {', '.join(self.assets_unpriced[:10])})"
                                     if self.assets_unpriced else "")]
        if self.positions:
            out.append(f"prediction positions: {self.positions - self.positions_unpriced} of {self.positions} priced")
        out.append(f"transactions valued: {self.transactions - self.transactions_unpriced} of {self.transactions}"
                   + (" (more at the next run)" if self.transactions_left else ""))
        c = self.counters
        out.append(f"fetched: {c.tickers_fetched} ticker(s), {c.candle_days_fetched} day(s) of candles, "
                   f"{c.market_prices_fetched} prediction price(s); {self.observations_pruned} old observation(s) "
                   "deleted")
        return out


def run_pricing(app: Appliance, *, now: dt.datetime | None = None, transaction_limit: int | None = None,
                retry_unpriced: bool = False) -> PricingResult:
    """One pricing run (the poller's ``price_tick``, ``vigatra prices refresh``)."""
    valuation = app.settings.valuation
    result = PricingResult(valuation.currency, enabled=valuation.enabled)
    if not valuation.enabled:
        return result
    book = PriceBook(app, now=now)
    current = Resolver(book.current_leg, book.sources_for, valuation.cross_via)
    price_holdings(app, book, current, result)
    price_positions(app, book, current, result)
    if retry_unpriced:
        make_unpriced_due(app, book.now)
    price_transactions(app, book, result, transaction_limit or valuation.transactions_per_run)
    result.observations_pruned = prune_observations(app, book.now)
    result.counters = book.counters
    result.employees_valued = record_values(app, now=book.now).employees  # what the dashboard reads
    return result


# -- current prices ----------------------------------------------------------------------------------------

def price_holdings(app: Appliance, book: PriceBook, resolver: Resolver, result: PricingResult) -> None:
    with app.store.read() as session:
        assets = sorted(set(session.execute(select(BalanceSnapshot.asset).where(
            BalanceSnapshot.valid_to.is_(None), BalanceSnapshot.amount != Decimal(0)).distinct()).scalars()))
    rows = []
    for asset in assets:
        priced = resolver.price(asset, book.currency)
        if not priced.ok:
            result.assets_unpriced.append(asset)
        rows.append(current_row(asset, book.currency, priced, book.now))
    result.assets = len(assets)
    with app.store.queued_unit_of_work() as session:
        book.flush(session)
        upsert_current(session, rows)


def price_positions(app: Appliance, book: PriceBook, resolver: Resolver, result: PricingResult) -> None:
    with app.store.read() as session:
        held = session.execute(select(Connection.venue, PredictionPosition.market_id, PredictionPosition.outcome)
                               .join(Connection, Connection.id == PredictionPosition.connection_id)
                               .where(PredictionPosition.valid_to.is_(None), PredictionPosition.size != Decimal(0))
                               .distinct()).all()
    wanted: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for venue, market_id, outcome in held:
        if venue in PREDICTION_VENUES:
            wanted[venue].add((market_id, outcome))
    rows = []
    for venue, keys in sorted(wanted.items()):
        legs, why = book.outcome_prices(venue, keys)
        for market_id, outcome in sorted(keys):
            key = outcome_key(venue, market_id, outcome)
            leg = legs.get((market_id, outcome))
            if leg is None:
                priced = Priced(key, book.currency, None, reason=why or f"{venue} quotes no price for this outcome")
            else:
                converted = resolver.price(leg.quote, book.currency)
                if converted.ok and converted.price is not None:
                    priced = Priced(key, book.currency, leg.price * converted.price, (leg, *_real(converted.legs)))
                else:
                    priced = Priced(key, book.currency, None, reason=converted.reason)
            result.positions += 1
            result.positions_unpriced += 0 if priced.ok else 1
            rows.append(current_row(key, book.currency, priced, book.now))
    if rows:
        with app.store.queued_unit_of_work() as session:
            book.flush(session)
            upsert_current(session, rows)


def _real(legs: Sequence[Leg]) -> tuple[Leg, ...]:
    """Legs without the identity leg of an asset priced in itself (USD in USD)."""
    return tuple(leg for leg in legs if leg.source != IDENTITY)


def current_row(asset: str, currency: str, priced: Priced, now: dt.datetime) -> dict[str, Any]:
    return {"asset": asset, "currency": currency, "price": priced.price, "source": priced.source[:200],
            "route": priced.route[:500], "priced_at": priced.at or (now if priced.ok else None),
            "reason": priced.reason[:500], "updated_at": now}


def upsert_current(session: Session, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = ("price", "source", "route", "priced_at", "reason", "updated_at")
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pg = pg_insert(CurrentPrice)
        session.execute(pg.on_conflict_do_update(index_elements=["asset", "currency"],
                                                 set_={c: pg.excluded[c] for c in columns}), rows)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        lite = sqlite_insert(CurrentPrice)
        session.execute(lite.on_conflict_do_update(index_elements=["asset", "currency"],
                                                   set_={c: lite.excluded[c] for c in columns}), rows)


# -- transactions ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    id: int
    occurred_at: dt.datetime
    asset: str
    amount: Decimal
    market: str
    quote_asset: str | None
    quote_amount: Decimal | None
    price: Decimal | None
    venue: str
    kind: str
    attempts: int


class HistoricalPricer:
    """Prices at past instants: one resolver per candle (every time inside a candle has its price), except
    where an imported price took part, which is looked up for the exact time."""

    def __init__(self, book: PriceBook) -> None:
        self.book = book
        self.resolvers: dict[int, Resolver] = {}

    def price(self, asset: str, currency: str, when: dt.datetime) -> Priced:
        bucket = self.book.candle_open(when)
        resolver = self.resolvers.get(bucket)
        if resolver is None:
            start = dt.datetime.fromtimestamp(bucket / 1000, dt.UTC)
            resolver = self._resolver(start)
            self.resolvers[bucket] = resolver
        priced = resolver.price(asset, currency)
        if any(leg.source.startswith(IMPORTED) for leg in priced.legs) or (
                not priced.ok and PRICE_IMPORT_SOURCE in priced.reason):
            priced = self._resolver(when).price(asset, currency)
        return priced

    def _resolver(self, when: dt.datetime) -> Resolver:
        book = self.book

        def leg(source: str, base: str, quote: str) -> Leg | None:
            return book.leg_at(source, base, quote, when)

        return Resolver(leg, book.sources_for, book.valuation.cross_via)


def price_transactions(app: Appliance, book: PriceBook, result: PricingResult, limit: int) -> None:
    candidates = due_transactions(app, book.currency, book.now, limit + 1)
    result.transactions_left = len(candidates) > limit
    candidates = candidates[:limit]
    pricer = HistoricalPricer(book)
    trusted = {name: {t.lower() for t in chain.tokens} for name, chain in app.settings.chains.evm.items()}
    for start in range(0, len(candidates), WRITE_BATCH):
        batch = candidates[start:start + WRITE_BATCH]
        rows = [value_row(c, pricer, book, trusted) for c in batch]
        result.transactions += len(rows)
        result.transactions_unpriced += sum(1 for r in rows if r["value"] is None)
        retried = [c.id for c in batch if c.attempts]
        with app.store.queued_unit_of_work() as session:
            if retried:
                session.execute(delete(TransactionValue).where(TransactionValue.currency == book.currency,
                                                               TransactionValue.transaction_id.in_(retried)))
            insert_ignoring_duplicates(session, TransactionValue, rows)


def due_transactions(app: Appliance, currency: str, now: dt.datetime, limit: int) -> list[Candidate]:
    """Transactions without a value in ``currency``, and unpriced ones whose retry is due, oldest id first."""
    value = TransactionValue
    stmt = (select(Transaction.id, Transaction.occurred_at, Transaction.asset, Transaction.amount, Transaction.market,
                   Transaction.quote_asset, Transaction.quote_amount, Transaction.price, Connection.venue,
                   Connection.kind, value.attempts)
            .join(Connection, Connection.id == Transaction.connection_id)
            .outerjoin(value, and_(value.transaction_id == Transaction.id, value.currency == currency))
            .where(or_(value.transaction_id.is_(None), value.retry_at <= now))
            .order_by(Transaction.id).limit(limit))
    with app.store.read() as session:
        return [Candidate(r[0], r[1], r[2], r[3], r[4] or "", r[5], r[6], r[7], r[8], r[9], int(r[10] or 0))
                for r in session.execute(stmt)]


def value_row(c: Candidate, pricer: HistoricalPricer, book: PriceBook, trusted: dict[str, set[str]]
              ) -> dict[str, Any]:
    currency = book.currency
    row: dict[str, Any] = {"transaction_id": c.id, "currency": currency, "value": None, "price": None, "source": "",
                           "route": "", "priced_at": None, "reason": "", "retry_at": None, "attempts": c.attempts + 1,
                           "updated_at": book.now}
    if c.venue in trusted and c.market:
        if "#" in c.asset:
            return _unpriced(row, "a non-fungible token (ERC-721) has no market price", book.now + RETRY_UNLISTED)
        if c.market.lower() not in trusted[c.venue]:
            return _unpriced(row, f"token contract {c.market} is not one of chains.evm.{c.venue}.tokens: anyone can "
                                  f"name a token {c.asset[:20]}, so its symbol is not trusted for pricing",
                             book.now + RETRY_UNLISTED)
    if c.venue in PREDICTION_VENUES and c.quote_asset and (c.quote_amount is not None or c.price is not None):
        return _trade_price_row(row, c, pricer, currency)
    priced = pricer.price(c.asset, currency, c.occurred_at)
    if not priced.ok or priced.price is None:
        return _unpriced(row, priced.reason, _retry(priced, c.attempts + 1, book.now))
    row.update(value=c.amount * priced.price, price=priced.price, source=(priced.source or IDENTITY)[:200],
               route=priced.route[:500], priced_at=priced.at or c.occurred_at)
    return row


def _trade_price_row(row: dict[str, Any], c: Candidate, pricer: HistoricalPricer, currency: str) -> dict[str, Any]:
    """A prediction fill: its own price (the market's at that instant) in the quote currency, converted then."""
    notional = c.quote_amount if c.quote_amount is not None else c.amount * (c.price or Decimal(0))
    quote_asset = c.quote_asset or currency
    converted = pricer.price(quote_asset, currency, c.occurred_at)
    if not converted.ok or converted.price is None:
        return _unpriced(row, converted.reason, _retry(converted, c.attempts + 1, pricer.book.now))
    unit = c.price if c.price is not None else (notional / c.amount if c.amount else Decimal(0))
    legs = _real(converted.legs)
    route = f"fill price {unit.normalize():f} {quote_asset}" + "".join(f" x {leg.text()}" for leg in legs)
    source = "+".join(dict.fromkeys([c.venue, *(leg.source for leg in legs)]))
    row.update(value=notional * converted.price, price=unit * converted.price, source=source[:200], route=route[:500],
               priced_at=min([c.occurred_at, *(leg.at for leg in legs)]))
    return row


def _unpriced(row: dict[str, Any], reason: str, retry_at: dt.datetime) -> dict[str, Any]:
    row.update(reason=(reason or "no price")[:500], retry_at=retry_at)
    return row


def _retry(priced: Priced, attempts: int, now: dt.datetime) -> dt.datetime:
    if priced.retry_at is not None:
        return priced.retry_at
    if priced.transient:
        return now + min(RETRY_MAX, RETRY_FIRST * 2 ** max(0, attempts - 1))
    return now + RETRY_UNLISTED


def make_unpriced_due(app: Appliance, now: dt.datetime | None = None) -> int:
    """Every unpriced transaction value is due again (new prices were imported, the configuration changed)."""
    when = now or utcnow()
    with app.store.queued_unit_of_work() as session:
        return _rowcount(session.execute(update(TransactionValue).where(
            TransactionValue.value.is_(None), TransactionValue.retry_at.is_not(None)).values(retry_at=when)))


# -- retention ---------------------------------------------------------------------------------------------

def prune_observations(app: Appliance, now: dt.datetime) -> int:
    cutoff = now - dt.timedelta(days=app.settings.valuation.retention_days)
    with app.store.queued_unit_of_work() as session:
        pruned = _rowcount(session.execute(delete(PriceObservation).where(PriceObservation.fetched_at < cutoff)))
        session.execute(delete(PriceCandleDay).where(PriceCandleDay.fetched_at < cutoff))
    return pruned


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
