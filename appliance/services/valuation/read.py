"""Values as they are shown and exported: in ``valuation.currency``, with the price, its source and route and
the time it is for — or ``None`` and the reason ("unpriced"), never a zero that was not established.

- A balance is worth its amount times the asset's current price (``current_prices``, written by the pricing
  job). A price older than ``valuation.stale_after_hours`` is not used: the balance is shown unpriced.
- A transaction is worth what the pricing job stored for it at its own time (``transaction_values``).
- A prediction position is worth its size times its outcome's current price (its market's own price).
- A balance of zero is worth zero whatever the price.

Totals add the priced values and say how many were left out; a total is never presented as complete when
something is unpriced. Decimal throughout; values are rounded to the currency's minor unit only for showing.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.services.valuation.book import outcome_key
from appliance.settings import Settings
from appliance.store.base import utcnow
from appliance.store.models import (
    BalanceSnapshot,
    Connection,
    CurrentPrice,
    PredictionPosition,
    Transaction,
    TransactionValue,
)

NOT_YET = "not priced yet: the pricing job has not valued it (it runs every few minutes after the syncs)"
DISABLED = "valuation is turned off on this appliance (valuation.enabled: false)"
# Currencies without minor units (ISO 4217 exponent 0).
ZERO_DECIMALS = frozenset({"JPY", "KRW", "CLP", "ISK", "VND", "HUF"})
LOOKUP_BATCH = 500


@dataclass(frozen=True)
class Value:
    value: Decimal | None
    price: Decimal | None = None
    source: str = ""
    route: str = ""
    priced_at: dt.datetime | None = None
    reason: str = ""

    @property
    def priced(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class Total:
    value: Decimal
    priced: int
    unpriced: int

    @property
    def complete(self) -> bool:
        return self.unpriced == 0


def currency_of(settings: Settings) -> str:
    return settings.valuation.currency


def rounded(value: Decimal | None, currency: str) -> Decimal | None:
    """A value rounded to the currency's minor unit (half to even), for showing and exporting."""
    if value is None:
        return None
    unit = Decimal(1) if currency in ZERO_DECIMALS else Decimal("0.01")
    return value.quantize(unit, rounding=ROUND_HALF_EVEN)


def total(values: Iterable[Value]) -> Total:
    amount, priced, unpriced = Decimal(0), 0, 0
    for v in values:
        if v.value is None:
            unpriced += 1
        else:
            amount += v.value
            priced += 1
    return Total(amount, priced, unpriced)


# -- current prices ------------------------------------------------------------------------------------------

class PriceTable:
    """The current prices of some assets (or outcome keys) in the base currency, read once."""

    def __init__(self, session: Session, settings: Settings, keys: Iterable[str], *, now: dt.datetime | None = None
                 ) -> None:
        self.settings = settings
        self.currency = settings.valuation.currency
        self.enabled = settings.valuation.enabled
        self.stale_before = (now or utcnow()) - dt.timedelta(hours=settings.valuation.stale_after_hours)
        self.rows: dict[str, CurrentPrice] = {}
        wanted = sorted(set(keys))
        for start in range(0, len(wanted), LOOKUP_BATCH):
            chunk = wanted[start:start + LOOKUP_BATCH]
            for row in session.execute(select(CurrentPrice).where(
                    CurrentPrice.currency == self.currency, CurrentPrice.asset.in_(chunk))).scalars():
                self.rows[row.asset] = row

    def value(self, key: str, quantity: Decimal) -> Value:
        if not self.enabled:
            return Value(None, reason=DISABLED)
        row = self.rows.get(key)
        if quantity == 0:
            return Value(Decimal(0), row.price if row else None, row.source if row else "", "zero quantity",
                         row.priced_at if row else None)
        if row is None:
            return Value(None, reason=NOT_YET)
        if row.price is None:
            return Value(None, reason=row.reason or "no price")
        if row.priced_at is not None and row.priced_at < self.stale_before:
            hours = self.settings.valuation.stale_after_hours
            return Value(None, row.price, row.source, row.route, row.priced_at,
                         f"the last price ({row.source}, {row.priced_at:%Y-%m-%d %H:%M} UTC) is older than {hours} h")
        return Value(quantity * row.price, row.price, row.source, row.route, row.priced_at)


def balance_values(session: Session, settings: Settings, balances: Sequence[BalanceSnapshot]) -> list[Value]:
    table = PriceTable(session, settings, (b.asset for b in balances))
    return [table.value(b.asset, b.amount) for b in balances]


def position_values(session: Session, settings: Settings, rows: Sequence[tuple[PredictionPosition, Connection]]
                    ) -> list[Value]:
    keys = [outcome_key(c.venue, p.market_id, p.outcome) for p, c in rows]
    table = PriceTable(session, settings, keys)
    return [table.value(key, p.size) for key, (p, _c) in zip(keys, rows, strict=True)]


# -- transactions ----------------------------------------------------------------------------------------

def transaction_values(session: Session, settings: Settings, transactions: Iterable[Transaction]) -> dict[int, Value]:
    ids = [t.id for t in transactions]
    currency = settings.valuation.currency
    out: dict[int, Value] = {}
    stored: dict[int, TransactionValue] = {}
    for start in range(0, len(ids), LOOKUP_BATCH):
        chunk = ids[start:start + LOOKUP_BATCH]
        for row in session.execute(select(TransactionValue).where(
                TransactionValue.currency == currency, TransactionValue.transaction_id.in_(chunk))).scalars():
            stored[row.transaction_id] = row
    for tx_id in ids:
        found = stored.get(tx_id)
        if not settings.valuation.enabled and found is None:
            out[tx_id] = Value(None, reason=DISABLED)
        elif found is None:
            out[tx_id] = Value(None, reason=NOT_YET)
        elif found.value is None:
            out[tx_id] = Value(None, reason=found.reason or "no price")
        else:
            out[tx_id] = Value(found.value, found.price, found.source, found.route, found.priced_at)
    return out


# -- totals ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FirmTotals:
    currency: str
    holdings: Total  # balances, and prediction positions when included
    employees: int
    include_positions: bool
    by_employee: dict[int, Total]


def holdings_by_employee(session: Session, settings: Settings, *, employee_ids: Iterable[int] | None = None,
                         include_positions: bool = True) -> dict[int, Total]:
    """Each employee's current holdings (balances and prediction positions) valued, in one pass."""
    stmt = (select(Connection.employee_id, BalanceSnapshot.asset, BalanceSnapshot.amount)
            .join(Connection, Connection.id == BalanceSnapshot.connection_id)
            .where(BalanceSnapshot.valid_to.is_(None)))
    if employee_ids is not None:
        stmt = stmt.where(Connection.employee_id.in_(list(employee_ids)))
    amounts: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    for employee_id, asset, amount in session.execute(stmt):
        amounts[(employee_id, asset)] += amount
    pos_stmt = (select(Connection.employee_id, Connection.venue, PredictionPosition.market_id,
                       PredictionPosition.outcome, PredictionPosition.size)
                .join(Connection, Connection.id == PredictionPosition.connection_id)
                .where(PredictionPosition.valid_to.is_(None)))
    if employee_ids is not None:
        pos_stmt = pos_stmt.where(Connection.employee_id.in_(list(employee_ids)))
    for employee_id, venue, market_id, outcome, size in session.execute(pos_stmt) if include_positions else ():
        amounts[(employee_id, outcome_key(venue, market_id, outcome))] += size
    table = PriceTable(session, settings, {asset for _e, asset in amounts})
    values: dict[int, list[Value]] = defaultdict(list)
    for (employee_id, asset), amount in amounts.items():
        values[employee_id].append(table.value(asset, amount))
    return {employee_id: total(vs) for employee_id, vs in values.items()}


def firm_totals(session: Session, settings: Settings, *, include_positions: bool = True) -> FirmTotals:
    """Everything the firm's employees hold, valued (for users whose scope covers every employee)."""
    by_employee = holdings_by_employee(session, settings, include_positions=include_positions)
    return FirmTotals(settings.valuation.currency,
                      Total(sum((t.value for t in by_employee.values()), Decimal(0)),
                            sum(t.priced for t in by_employee.values()), sum(t.unpriced for t in by_employee.values())),
                      len(by_employee), include_positions, by_employee)
