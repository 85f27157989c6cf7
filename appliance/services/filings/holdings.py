"""Holdings as of the end of a chosen day, reconstructed from balance observations and transactions.

The method (stated on every holdings report, :func:`method_text`), per connection (account) and asset, with
``T`` the end of the day (the next midnight UTC):

1. The balance observations current at ``T`` (``valid_from <= T < valid_to``), summed over the venue's
   sub-accounts. A sync writes a row only when an amount changes and moves ``observed_until`` forward on every
   successful poll (an asset that disappears gets a zero row), so these rows are the last balances the venue
   reported at or before ``T``.
2. An asset's amount last confirmed at or after ``T`` (``observed_until >= T``: unchanged from before ``T``
   until then) is its holding at ``T`` (basis ``observed``). One last confirmed before ``T`` (sparse polls, a
   broken connection), and an asset the last reading before ``T`` did not list (zero then), moves by the
   completed transactions of the connection between that confirmation and ``T`` (basis
   ``observed+transactions``). Each asset from its own confirmation: a later reading that confirmed other,
   unchanged assets says nothing of this one.
3. A connection first read after ``T`` has no observation at ``T``: its first observation is rolled back by
   the completed transactions between ``T`` and that first reading (basis ``rolled back``) — exact when the
   venue's history reaches back that far (a history limit shows as a coverage gap on the report). A
   connection that replaced an earlier key to the same account (re-onboarding) is not rolled back: the
   earlier connection's observations are the account's holdings until it was replaced, and they end then.

A transaction moves balances as the venue books it: a buy adds the asset and takes the quote amount, a sell
the reverse; deposits, transfers in, rewards and settlements add; withdrawals, transfers out and fee entries
subtract; ``other`` entries carry their own sign; a fee (``fee_amount`` in ``fee_asset``) subtracts. Pending,
failed, cancelled and orphaned (chain reorg) transactions moved nothing. Wallet balances are kept per token
contract (a symbol alone is not an identity on a chain).

Prediction-market positions are the positions observed at ``T`` (not reconstructed before their first
observation). Values are in the base currency at ``T``: the close of the last candle of the day (the valuation
service's historical prices: issue 18), current prices for a day not over yet; a holding without a price reads
unpriced with the reason, never zero.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.errors import Invalid
from appliance.rbac.actors import Actor
from appliance.services.connections import successors as replaced_others
from appliance.services.context import Appliance
from appliance.services.filings.periods import end_of
from appliance.services.scope import flagged_employee_ids_query, visible_scope
from appliance.services.valuation import read as valuation
from appliance.store.base import utcnow
from appliance.store.models import (
    BalanceSnapshot,
    Connection,
    Employee,
    PredictionPosition,
    PriceObservation,
    Transaction,
)

OBSERVED = "observed"
FORWARD = "observed+transactions"
ROLLED_BACK = "rolled back"
ADDS = ("deposit", "transfer_in", "reward", "settlement")
SUBTRACTS = ("withdrawal", "transfer_out", "fee")

Key = tuple[str, str]  # (asset, token contract for wallets, else "")


@dataclass
class Holding:
    employee: Employee | None
    connection: Connection
    kind: str  # balance | prediction
    asset: str
    contract: str
    quantity: Decimal
    basis: str
    observed_at: dt.datetime | None  # the observation the quantity starts from
    applied: int = 0  # transactions applied to it
    market_id: str = ""
    outcome: str = ""
    value: valuation.Value = field(default_factory=lambda: valuation.Value(None, reason=valuation.NOT_YET))


@dataclass(frozen=True)
class HoldingsReport:
    day: dt.date
    at: dt.datetime
    currency: str
    holdings: list[Holding]
    connections: list[Connection]
    method: str


def method_text(day: dt.date, currency: str) -> str:
    return (f"Holdings at the end of {day.isoformat()} (UTC). Per account and asset: the last balance the venue "
            f"reported at or before that time (basis '{OBSERVED}'); if it was last confirmed earlier, the completed "
            f"transactions between its confirmation and the end of the day applied to it (basis '{FORWARD}'); for "
            f"an account first read later, its first balance rolled back by the completed transactions between the "
            f"end of the day and that reading (basis '{ROLLED_BACK}'). Prediction positions as observed. Values in "
            f"{currency} at that day's closing price (valuation service); 'unpriced' with the reason where no "
            "price exists, never zero.")


def effects(tx: Transaction, wallet: bool) -> list[tuple[Key, Decimal]]:
    """How one completed transaction moved the connection's balances, per (asset, contract)."""
    contract = (tx.market or "") if wallet else ""
    amount = tx.amount or Decimal(0)
    out: list[tuple[Key, Decimal]] = []
    if tx.kind in ("buy", "sell"):
        sign = 1 if tx.kind == "buy" else -1
        out.append(((tx.asset, contract), sign * amount))
        if tx.quote_asset and tx.quote_amount is not None:
            out.append(((tx.quote_asset, ""), -sign * tx.quote_amount))
    elif tx.kind in ADDS:
        out.append(((tx.asset, contract), abs(amount)))
    elif tx.kind in SUBTRACTS:
        out.append(((tx.asset, contract), -abs(amount)))
    else:  # other: the venue's own sign
        out.append(((tx.asset, contract), amount))
    if tx.kind != "fee" and tx.fee_asset and tx.fee_amount:
        fee_contract = contract if tx.fee_asset == tx.asset else ""
        out.append(((tx.fee_asset, fee_contract), -abs(tx.fee_amount)))
    return out


def _connections(session: Session, actor: Actor) -> list[tuple[Connection, Employee | None]]:
    stmt = (select(Connection, Employee).outerjoin(Employee, Employee.id == Connection.employee_id)
            .order_by(Employee.name, Employee.id, Connection.id))
    if visible_scope(actor, "balances:export") == "flagged":
        stmt = stmt.where(Connection.employee_id.in_(flagged_employee_ids_query()))
    return [(c, e) for c, e in session.execute(stmt).all()]


def _transactions(session: Session, connection_id: int, after: dt.datetime, through: dt.datetime, *,
                  include_start: bool) -> list[Transaction]:
    lower = Transaction.occurred_at >= after if include_start else Transaction.occurred_at > after
    upper = Transaction.occurred_at <= through if include_start else Transaction.occurred_at < through
    return list(session.execute(select(Transaction).where(
        Transaction.connection_id == connection_id, Transaction.status == "completed",
        Transaction.orphaned.is_(False), lower, upper).order_by(Transaction.occurred_at, Transaction.id)).scalars())


def _balances_at(session: Session, connection: Connection, employee: Employee | None, at: dt.datetime, *,
                 successor: bool = False) -> list[Holding]:
    """The connection's balances at ``at`` (the module's method). ``successor``: it replaced an earlier
    connection to the same account, whose observations hold the account before this one's first reading."""
    wallet = connection.kind == "wallet"
    current = session.execute(select(BalanceSnapshot).where(
        BalanceSnapshot.connection_id == connection.id, BalanceSnapshot.valid_from < at,
        (BalanceSnapshot.valid_to.is_(None)) | (BalanceSnapshot.valid_to >= at))).scalars().all()
    amounts: dict[Key, Decimal] = defaultdict(Decimal)
    applied: dict[Key, int] = defaultdict(int)
    if current:
        confirmed: dict[Key, dt.datetime] = {}  # when each asset's amount was last confirmed by a reading
        for row in current:
            key = (row.asset, row.account if wallet else "")
            amounts[key] += row.amount
            confirmed[key] = max(confirmed.get(key, row.observed_until), row.observed_until)
        # A reading lists every asset: the last one at or before ``at`` confirmed as zero those it did not list.
        read = max([r.valid_from for r in current] + [r.observed_until for r in current if r.observed_until < at])
        # An amount confirmed before ``at`` moves by the transactions after its confirmation; one confirmed at or
        # after ``at`` (unchanged from before ``at`` to then) is the holding as it is.
        since = min([read, *(t for t in confirmed.values() if t < at)])
        if since < at:
            for tx in _transactions(session, connection.id, since, at, include_start=False):
                for key, delta in effects(tx, wallet):
                    if tx.occurred_at > confirmed.setdefault(key, read):
                        amounts[key] += delta
                        applied[key] += 1
        return [Holding(employee, connection, "balance", key[0], key[1], amount,
                        FORWARD if applied[key] else OBSERVED, min(confirmed[key], at), applied[key])
                for key, amount in sorted(amounts.items()) if amount or applied[key]]
    first = session.execute(select(func.min(BalanceSnapshot.valid_from)).where(
        BalanceSnapshot.connection_id == connection.id)).scalar_one_or_none()
    # Nothing current at ``at`` although the connection was read before it: its observations ended (it was
    # replaced by a newer key), so it held nothing of the account's any more; a successor is not rolled back.
    if first is None or first < at or successor:
        return []
    for row in session.execute(select(BalanceSnapshot).where(
            BalanceSnapshot.connection_id == connection.id, BalanceSnapshot.valid_from == first)).scalars():
        amounts[(row.asset, row.account if wallet else "")] += row.amount
    for tx in _transactions(session, connection.id, at, first, include_start=True):
        for key, delta in effects(tx, wallet):
            amounts[key] -= delta
            applied[key] += 1
    return [Holding(employee, connection, "balance", key[0], key[1], amount, ROLLED_BACK, first, applied[key])
            for key, amount in sorted(amounts.items()) if amount]


def _positions_at(session: Session, connection: Connection, employee: Employee | None, at: dt.datetime
                  ) -> list[Holding]:
    rows = session.execute(select(PredictionPosition).where(
        PredictionPosition.connection_id == connection.id, PredictionPosition.valid_from < at,
        (PredictionPosition.valid_to.is_(None)) | (PredictionPosition.valid_to >= at))
        .order_by(PredictionPosition.market_title, PredictionPosition.id)).scalars().all()
    return [Holding(employee, connection, "prediction", p.market_title or p.market_id, "", p.size, OBSERVED,
                    min(p.observed_until, at), market_id=p.market_id, outcome=p.outcome) for p in rows if p.size]


class _Valuer:
    """Prices at ``at`` in the base currency: the valuation service's candle closes for a day that is over,
    the current prices for one that is not."""

    def __init__(self, session: Session, app: Appliance, at: dt.datetime) -> None:
        self.session = session
        self.app = app
        self.at = at
        self.currency = valuation.currency_of(app.settings)
        self.now = utcnow()
        self.live = at > self.now
        self._pricer: Any = None
        self._table: valuation.PriceTable | None = None

    def prepare(self, keys: set[str]) -> None:
        self._table = valuation.PriceTable(self.session, self.app.settings, keys, now=self.now)

    def _current(self, key: str) -> valuation.Value:
        """The current price of ``key`` (an asset or an outcome key) per unit, from the pricing job's table."""
        if self._table is None or key not in self._table.rows:
            wanted = {key, *(self._table.rows if self._table is not None else ())}
            self._table = valuation.PriceTable(self.session, self.app.settings, wanted, now=self.now)
        return self._table.value(key, Decimal(1))

    def _price(self, asset: str) -> tuple[Decimal | None, str, str, dt.datetime | None, str]:
        if not self.app.settings.valuation.enabled:
            return None, "", "", None, valuation.DISABLED
        if self.live:
            found = self._current(asset)
            return found.price if found.priced else None, found.source, found.route, found.priced_at, found.reason
        if self._pricer is None:
            from appliance.services.valuation.book import PriceBook
            from appliance.services.valuation.job import HistoricalPricer

            self._pricer = HistoricalPricer(PriceBook(self.app, now=self.now))
        priced = self._pricer.price(asset, self.currency, self.at - dt.timedelta(microseconds=1))
        if not priced.ok:
            return None, "", "", None, priced.reason or "no price"
        return priced.price, priced.source, priced.route, priced.at, ""

    def value(self, asset: str, quantity: Decimal) -> valuation.Value:
        if quantity == 0:
            return valuation.Value(Decimal(0), reason="")
        price, source, route, at, reason = self._price(asset)
        if price is None:
            return valuation.Value(None, reason=reason)
        return valuation.Value(quantity * price, price, source, route, at)

    def position(self, holding: Holding) -> valuation.Value:
        from appliance.services.valuation.book import outcome_key

        key = outcome_key(holding.connection.venue, holding.market_id, holding.outcome)
        if not self.app.settings.valuation.enabled:
            return valuation.Value(None, reason=valuation.DISABLED)
        if self.live:
            current = self._current(key)
            if not current.priced or current.price is None:
                return valuation.Value(None, reason=current.reason)
            return valuation.Value(holding.quantity * current.price, current.price, current.source, current.route,
                                   current.priced_at)
        stale = dt.timedelta(hours=self.app.settings.valuation.stale_after_hours)
        found = self.session.execute(select(PriceObservation).where(
            PriceObservation.kind == "market", PriceObservation.asset == key, PriceObservation.at < self.at,
            PriceObservation.at >= self.at - stale).order_by(PriceObservation.at.desc()).limit(1)).scalar_one_or_none()
        if found is None:
            return valuation.Value(None, reason=f"no price of this outcome was observed in the "
                                                f"{stale.total_seconds() // 3600:.0f} h before the end of the day")
        quote = self.value(found.currency, Decimal(1)) if found.currency != self.currency else None
        if quote is not None and quote.price is None:
            return valuation.Value(None, reason=quote.reason)
        rate = quote.price if quote is not None and quote.price is not None else Decimal(1)
        unit = found.price * rate
        return valuation.Value(holding.quantity * unit, unit, found.source, f"market price {found.currency}",
                               found.at)


def holdings_as_of(session: Session, actor: Actor, app: Appliance, day: dt.date) -> HoldingsReport:
    """Every holding of every account the actor may export, at the end of ``day`` (prediction positions only
    for an actor who may export them)."""
    if day > utcnow().date():
        raise Invalid(f"as_of {day.isoformat()} is in the future: holdings are reported as of today or earlier",
                      field="as_of")
    pairs = _connections(session, actor)
    positions = actor.scope_for("predictions:export")
    flagged_positions = positions == "flagged" and visible_scope(actor, "balances:export") == "all"
    flagged: set[int] = set()
    if flagged_positions:
        flagged = {int(i) for i in session.execute(flagged_employee_ids_query()).scalars()}
    return _report(session, app, day, pairs, lambda c: positions is not None and (
        not flagged_positions or c.employee_id in flagged))


def employee_holdings_as_of(session: Session, app: Appliance, employee: Employee, day: dt.date,
                            connections: list[Connection] | None = None) -> HoldingsReport:
    """One employee's holdings at the end of ``day`` by the same method (their own certification: every
    connection given, default all of theirs, with prediction positions; no reader's scope applies). A day not
    over yet reads as now, valued at current prices."""
    if connections is None:
        connections = list(session.execute(select(Connection).where(Connection.employee_id == employee.id)
                                           .order_by(Connection.id)).scalars())
    return _report(session, app, day, [(c, employee) for c in connections], lambda _c: True)


def _report(session: Session, app: Appliance, day: dt.date, pairs: list[tuple[Connection, Employee | None]],
            with_positions: Callable[[Connection], bool]) -> HoldingsReport:
    at = end_of(day)
    holdings: list[Holding] = []
    successors = replaced_others(session, [c.id for c, _e in pairs])
    for connection, employee in pairs:
        holdings.extend(_balances_at(session, connection, employee, at, successor=connection.id in successors))
        if with_positions(connection):
            holdings.extend(_positions_at(session, connection, employee, at))
    valuer = _Valuer(session, app, at)
    if valuer.live:  # one read of the current prices for every asset and outcome (not one per holding)
        from appliance.services.valuation.book import outcome_key

        valuer.prepare({h.asset if h.kind == "balance" else outcome_key(h.connection.venue, h.market_id, h.outcome)
                        for h in holdings})
    for holding in holdings:
        holding.value = valuer.position(holding) if holding.kind == "prediction" else valuer.value(
            holding.asset, holding.quantity)
    currency = valuation.currency_of(app.settings)
    return HoldingsReport(day, at, currency, holdings, [c for c, _e in pairs], method_text(day, currency))


def totals(holdings: Iterable[Holding]) -> valuation.Total:
    return valuation.total(h.value for h in holdings)
