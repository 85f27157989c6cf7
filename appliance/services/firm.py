"""Firm-wide views of what employees hold and trade, under the reader's scope: holdings by asset, the holders
of one asset, and recent large trades.

Scope is the one of ``balances:read`` (holdings) and ``transactions:read`` (trades): a reader whose scope is
``flagged`` sees the same pages built from the flagged employees' records only — never a firm total that
would reveal what the others hold.

- Holdings by asset: for a reader who sees everyone, the figures the pricing job recorded at its last run
  (``FirmAssetValue``, the overview's "Value held": valuing every holding of 10,000 employees takes seconds,
  too long for a page); for a flagged reader, the flagged employees' current balances valued now (a few
  employees: cheap).
- The holders of one asset: the current balances of that asset (the index on asset), summed per employee,
  valued at the current price, largest first, paged.
- Recent large trades: buys and sells whose value in the base currency (stored by the pricing job for the
  trade's own time) is at least a threshold (``display.large_trade_value`` unless the reader asks for
  another), newest first, paged by a cursor on (time, id). Amounts are exact text on SQLite, so no index
  can order by value there: the trades are walked newest first and each value compared with Decimal
  (see :func:`large_trades`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from appliance.errors import Invalid
from appliance.rbac.actors import Actor
from appliance.services.scope import flagged_employee_ids_query, visible_scope
from appliance.services.valuation import read as valuation
from appliance.services.valuation.snapshots import PREDICTIONS
from appliance.settings import Settings
from appliance.store.models import BalanceSnapshot, Connection, FirmAssetValue, Transaction, TransactionValue

HOLDINGS = "balances:read"
TRADES = "transactions:read"
TRADE_KINDS = ("buy", "sell")
HOLDERS_PAGE = 50
TRADES_PAGE = 50
SCAN_BATCH = 1000  # trades read per query, newest first
MAX_SCANNED = 20_000  # trades looked at for one page at most (a page stays well under a second)


@dataclass(frozen=True)
class AssetLine:
    asset: str
    amount: Decimal
    value: Decimal | None  # the priced part; None when nothing of it could be priced
    holders: int
    unpriced: int  # holdings of the asset left out of ``value`` for want of a price
    reason: str  # why (the first reason met)


@dataclass(frozen=True)
class Holdings:
    currency: str
    scope: str  # all | flagged
    assets: list[AssetLine]
    as_of: dt.datetime | None  # the pricing run the figures come from (all), or None (valued now)

    @property
    def value_total(self) -> Decimal | None:
        priced = [a.value for a in self.assets if a.value is not None]
        return sum(priced, Decimal(0)) if priced else None


def _flagged(stmt: Any, actor: Actor, permission: str) -> Any:
    if visible_scope(actor, permission) == "flagged":
        stmt = stmt.where(Connection.employee_id.in_(flagged_employee_ids_query()))
    return stmt


def holdings_by_asset(session: Session, actor: Actor, settings: Settings) -> Holdings:
    """Every asset the reader may see held, largest value first (unpriced ones last, by name)."""
    scope = visible_scope(actor, HOLDINGS)
    currency = valuation.currency_of(settings)
    if scope == "all":
        rows = session.execute(select(FirmAssetValue).where(FirmAssetValue.currency == currency,
                                                            FirmAssetValue.kind != PREDICTIONS)).scalars()
        lines, as_of = [], None
        for r in rows:
            priced = r.value if (r.value or not r.unpriced) else None
            lines.append(AssetLine(r.asset, r.amount, priced, r.holders, r.unpriced, r.reason))
            as_of = r.as_of if as_of is None or r.as_of > as_of else as_of
        return Holdings(currency, scope, _by_value(lines), as_of)
    per_asset: dict[str, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    stmt = (select(Connection.employee_id, BalanceSnapshot.asset, BalanceSnapshot.amount)
            .join(Connection, Connection.id == BalanceSnapshot.connection_id).where(BalanceSnapshot.valid_to.is_(None)))
    for employee_id, asset, amount in session.execute(_flagged(stmt, actor, HOLDINGS)):
        per_asset[asset][employee_id] += amount
    table = valuation.PriceTable(session, settings, per_asset)
    lines = []
    for asset, holders in per_asset.items():
        values = [table.value(asset, amount) for amount in holders.values()]
        total = valuation.total(values)
        reason = next((v.reason for v in values if v.value is None), "")
        lines.append(AssetLine(asset, sum(holders.values(), Decimal(0)), total.value if total.priced else None,
                               sum(1 for a in holders.values() if a), total.unpriced, reason))
    return Holdings(currency, scope, _by_value(lines), None)


def _by_value(lines: list[AssetLine]) -> list[AssetLine]:
    return sorted(lines, key=lambda a: (a.value is None, -(a.value or 0), a.asset))


@dataclass(frozen=True)
class Holder:
    employee_id: int
    amount: Decimal
    value: valuation.Value
    venues: tuple[str, ...]


@dataclass(frozen=True)
class Holders:
    asset: str
    currency: str
    rows: list[Holder]  # this page's
    total: int  # holders on every page
    page: int
    pages: int
    amount: Decimal  # of every holder the reader may see


def holders_of(session: Session, actor: Actor, settings: Settings, asset: str, *, page: int = 1,
               per_page: int = HOLDERS_PAGE) -> Holders:
    """The employees holding ``asset`` now (a non-zero current balance), largest value first."""
    if not asset or len(asset) > 64:
        raise Invalid("asset: a symbol such as BTC", field="asset")
    stmt = (select(Connection.employee_id, Connection.venue, BalanceSnapshot.amount)
            .join(Connection, Connection.id == BalanceSnapshot.connection_id)
            .where(BalanceSnapshot.asset == asset, BalanceSnapshot.valid_to.is_(None)))
    amounts: dict[int, Decimal] = defaultdict(Decimal)
    venues: dict[int, set[str]] = defaultdict(set)
    for employee_id, venue, amount in session.execute(_flagged(stmt, actor, HOLDINGS)):
        amounts[employee_id] += amount
        if amount:
            venues[employee_id].add(venue)
    table = valuation.PriceTable(session, settings, [asset])
    rows = [Holder(e, a, table.value(asset, a), tuple(sorted(venues[e]))) for e, a in amounts.items() if a]
    rows.sort(key=lambda h: (h.value.value is None, -(h.value.value or 0), -h.amount, h.employee_id))
    pages = max(1, -(-len(rows) // per_page))
    page = min(max(page, 1), pages)
    return Holders(asset, valuation.currency_of(settings), rows[(page - 1) * per_page:page * per_page], len(rows),
                   page, pages, sum((h.amount for h in rows), Decimal(0)))


@dataclass(frozen=True)
class LargeTrade:
    transaction: Transaction
    connection: Connection
    value: valuation.Value


@dataclass(frozen=True)
class LargeTrades:
    currency: str
    threshold: Decimal
    rows: list[LargeTrade]
    next_cursor: str | None
    searched_back_to: dt.datetime | None = None  # the page stopped early: trades before this are not looked at yet


def parse_threshold(text: str | None) -> Decimal | None:
    """The ``min_value`` a reader asked for (None: the configured default); anything but an amount >= 0 is
    refused."""
    if text is None or text == "":
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or value < 0:
        raise Invalid(f"min_value: an amount of 0 or more, such as 10000, got {text[:40]!r}", field="min_value")
    return value


def default_threshold(settings: Settings) -> Decimal:
    return Decimal(settings.display.large_trade_value)


def large_trades(session: Session, actor: Actor, settings: Settings, *, threshold: Decimal | None = None,
                 cursor: str | None = None, limit: int = TRADES_PAGE) -> LargeTrades:
    """Buys and sells worth at least ``threshold`` (the base currency), newest first, after ``cursor``.

    The trades are walked newest first through the index on their time, ``SCAN_BATCH`` at a time, and each
    batch's stored values are read by id and compared exactly (Decimal): one plan on both databases that stops
    as soon as the page is full. A page stops early after ``MAX_SCANNED`` trades (a threshold few trades reach
    in a long history); it then says how far back it looked and gives the cursor to look further."""
    threshold = default_threshold(settings) if threshold is None else threshold
    if not threshold.is_finite() or threshold < 0:
        raise Invalid("min_value: an amount of 0 or more", field="min_value")
    if not 1 <= limit <= 500:
        raise Invalid("limit is 1 to 500", field="limit")
    currency = valuation.currency_of(settings)
    stmt = _flagged(select(Transaction.id, Transaction.occurred_at)
                    .join(Connection, Connection.id == Transaction.connection_id)
                    .where(Transaction.kind.in_(TRADE_KINDS), Transaction.orphaned.is_(False))
                    .order_by(Transaction.occurred_at.desc(), Transaction.id.desc()), actor, TRADES)
    found: list[int] = []
    after = decode_cursor(cursor) if cursor else None
    scanned = 0
    exhausted = False
    while len(found) <= limit and scanned < MAX_SCANNED:
        # "<=" first: a range on the index (an OR of the two cases alone would make SQLite scan from the top).
        page = stmt if after is None else stmt.where(
            Transaction.occurred_at <= after[0], or_(Transaction.occurred_at < after[0], Transaction.id < after[1]))
        rows = session.execute(page.limit(SCAN_BATCH)).all()
        values: dict[int, Decimal | None] = {tx_id: value for tx_id, value in session.execute(
            select(TransactionValue.transaction_id, TransactionValue.value).where(
                TransactionValue.currency == currency, TransactionValue.value.is_not(None),
                TransactionValue.transaction_id.in_([tx_id for tx_id, _at in rows])))} if rows else {}
        for tx_id, at in rows:
            value = values.get(tx_id)
            if value is not None and abs(value) >= threshold:
                found.append(tx_id)
            after = (at, tx_id)
            scanned += 1
            if len(found) > limit:
                break
        if len(rows) < SCAN_BATCH:
            exhausted = True
            break
    more = len(found) > limit
    loaded = {t.id: (t, c, v) for t, c, v in session.execute(
        select(Transaction, Connection, TransactionValue).join(Connection, Connection.id == Transaction.connection_id)
        .join(TransactionValue, and_(TransactionValue.transaction_id == Transaction.id,
                                     TransactionValue.currency == currency))
        .where(Transaction.id.in_(found[:limit]))).all()} if found else {}
    trades = [LargeTrade(t, c, valuation.Value(v.value, v.price, v.source, v.route, v.priced_at))
              for t, c, v in (loaded[tx_id] for tx_id in found[:limit])]
    if more:
        last = trades[-1].transaction
        return LargeTrades(currency, threshold, trades, encode_cursor(last.occurred_at, last.id), None)
    if exhausted or after is None:
        return LargeTrades(currency, threshold, trades, None, None)
    # Stopped early: the next page goes on from the last trade looked at.
    return LargeTrades(currency, threshold, trades, encode_cursor(*after), after[0])


def encode_cursor(at: dt.datetime, last_id: int) -> str:
    text = f"{at.astimezone(dt.UTC).isoformat()}|{last_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    """The time and id a cursor carries; anything else is refused (start again without one)."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, last_id = text.split("|")
        when = dt.datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError(at)
        return when, int(last_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Invalid("cursor: not a cursor this list gave (start again without one)", field="cursor") from None
