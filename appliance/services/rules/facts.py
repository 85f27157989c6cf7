"""Reading the records rules look at, as plain rows (SQLAlchemy Core, only the columns needed), in
batches of employees or by id for the records a sync just stored."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.services.rules.groups import groups_of
from appliance.store.models import BalanceSnapshot, Connection, Employee, PredictionPosition, Transaction

TRADE_KINDS = frozenset({"buy", "sell"})
TRANSFER_KINDS = frozenset({"deposit", "withdrawal", "transfer_in", "transfer_out"})
OUTGOING = frozenset({"withdrawal", "transfer_out"})
# Every kind a restricted or watch list looks at: a fee or a reward is not something the employee did.
TOUCHING_KINDS = frozenset({"buy", "sell", "deposit", "withdrawal", "transfer_in", "transfer_out", "settlement",
                            "other"})


@dataclass(frozen=True)
class Person:
    id: int
    name: str
    department: str
    groups: frozenset[int]


@dataclass(frozen=True)
class Account:
    id: int
    employee_id: int
    kind: str  # exchange | wallet | prediction
    venue: str
    label: str
    address: str


@dataclass(slots=True)
class Tx:
    id: int
    connection_id: int
    kind: str
    occurred_at: dt.datetime
    asset: str
    amount: Decimal
    market: str
    quote_asset: str | None
    quote_amount: Decimal | None
    raw: dict[str, Any] | None = None


@dataclass(slots=True)
class Position:
    id: int
    connection_id: int
    market_id: str
    market_title: str
    category: str
    outcome: str
    size: Decimal
    avg_price: Decimal | None
    current_value: Decimal | None
    valid_from: dt.datetime


@dataclass(slots=True)
class Snapshot:
    id: int
    connection_id: int
    asset: str
    account: str
    amount: Decimal
    valid_from: dt.datetime
    valid_to: dt.datetime | None


def chunks(ids: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


def people(session: Session, employee_ids: Sequence[int] | None = None) -> dict[int, Person]:
    stmt = select(Employee.id, Employee.name, Employee.department).order_by(Employee.id)
    rows: list[Any] = []
    if employee_ids is None:
        rows = list(session.execute(stmt))
    else:
        for part in chunks(list(employee_ids), 900):
            rows.extend(session.execute(stmt.where(Employee.id.in_(part))))
    groups = groups_of(session, [r[0] for r in rows])
    return {r[0]: Person(r[0], r[1], r[2] or "", groups.get(r[0], frozenset())) for r in rows}


def accounts(session: Session, employee_ids: Sequence[int] | None = None,
             connection_ids: Sequence[int] | None = None) -> dict[int, Account]:
    stmt = select(Connection.id, Connection.employee_id, Connection.kind, Connection.venue, Connection.label,
                  Connection.address)
    out: dict[int, Account] = {}
    if employee_ids is None and connection_ids is None:
        return {r[0]: Account(*r) for r in session.execute(stmt)}
    column, ids = ((Connection.employee_id, employee_ids) if employee_ids is not None
                   else (Connection.id, connection_ids))
    for part in chunks(list(ids or []), 900):
        out.update({r[0]: Account(*r) for r in session.execute(stmt.where(column.in_(part)))})
    return out


def accounts_of_owner(session: Session, connection_id: int) -> dict[int, Account]:
    """Every connection of the employee who owns this one (one statement)."""
    owner = select(Connection.employee_id).where(Connection.id == connection_id).scalar_subquery()
    return {r[0]: Account(*r) for r in session.connection().execute(select(
        Connection.id, Connection.employee_id, Connection.kind, Connection.venue, Connection.label,
        Connection.address).where(Connection.employee_id == owner))}


_TX_COLUMNS = (Transaction.id, Transaction.connection_id, Transaction.kind, Transaction.occurred_at, Transaction.asset,
               Transaction.amount, Transaction.market, Transaction.quote_asset, Transaction.quote_amount)


def _tx_rows(session: Session, stmt: Any) -> list[Tx]:
    # Core on the session's connection: plain rows, none of the ORM's per-row work (millions of rows).
    return [Tx(*r) for r in session.connection().execute(stmt).all()]


def transactions_of_connections(session: Session, connection_ids: Iterable[int], *,
                                kinds: Iterable[str] | None = None, assets: Iterable[str] | None = None,
                                since_id: int = 0, ids: Sequence[int] | None = None) -> list[Tx]:
    """Transactions of these connections in time order (orphaned chain rows left out: a reorg undid them)."""
    conns = list(connection_ids)
    if not conns:
        return []
    stmt = select(*_TX_COLUMNS).where(Transaction.connection_id.in_(conns), Transaction.orphaned.is_(False))
    if kinds is not None:
        stmt = stmt.where(Transaction.kind.in_(list(kinds)))
    if assets is not None:
        stmt = stmt.where(Transaction.asset.in_(list(assets)))
    if since_id:
        stmt = stmt.where(Transaction.id > since_id)
    if ids is not None:
        stmt = stmt.where(Transaction.id.in_(list(ids)))
    return _tx_rows(session, stmt.order_by(Transaction.occurred_at, Transaction.id))


def attach_raw(session: Session, rows: Sequence[Tx]) -> None:
    """Load the venue's own row (counterparty addresses, a market's title) for these transactions only."""
    wanted = {r.id: r for r in rows}
    for part in chunks(list(wanted), 900):
        for tx_id, raw in session.connection().execute(select(Transaction.id, Transaction.raw).where(
                Transaction.id.in_(part))):
            wanted[tx_id].raw = raw if isinstance(raw, dict) else None


def positions_of_connections(session: Session, connection_ids: Iterable[int]) -> list[Position]:
    conns = list(connection_ids)
    if not conns:
        return []
    rows: Any = session.connection().execute(select(
        PredictionPosition.id, PredictionPosition.connection_id, PredictionPosition.market_id,
        PredictionPosition.market_title, PredictionPosition.category, PredictionPosition.outcome,
        PredictionPosition.size, PredictionPosition.avg_price, PredictionPosition.current_value,
        PredictionPosition.valid_from).where(PredictionPosition.connection_id.in_(conns)).order_by(
        PredictionPosition.connection_id, PredictionPosition.market_id, PredictionPosition.outcome,
        PredictionPosition.id))
    return [Position(*r) for r in rows]


def snapshots_of_connections(session: Session, connection_ids: Iterable[int], *,
                             assets: Iterable[str] | Any = None) -> list[Snapshot]:
    conns = list(connection_ids)
    if not conns:
        return []
    stmt = select(BalanceSnapshot.id, BalanceSnapshot.connection_id, BalanceSnapshot.asset, BalanceSnapshot.account,
                  BalanceSnapshot.amount, BalanceSnapshot.valid_from, BalanceSnapshot.valid_to).where(
        BalanceSnapshot.connection_id.in_(conns))
    if assets is not None:
        stmt = stmt.where(BalanceSnapshot.asset.in_(assets if hasattr(assets, "compile") else list(assets)))
    return [Snapshot(*r) for r in session.connection().execute(stmt.order_by(
        BalanceSnapshot.connection_id, BalanceSnapshot.asset, BalanceSnapshot.account, BalanceSnapshot.id))]


def openings(rows: Sequence[Any], key: Any, size: Any) -> list[Any]:
    """Rows that open a series (the first observation, or the first non-zero one after a zero): a new
    position or a new holding. ``rows`` are ordered by series then id."""
    out = []
    previous_key: Any = None
    previous_size = Decimal(0)
    for row in rows:
        k = key(row)
        if k != previous_key:
            previous_key, previous_size = k, Decimal(0)
        current = size(row)
        if current and not previous_size:
            out.append(row)
        previous_size = current
    return out


def market_catalogue(positions: Iterable[Position]) -> dict[str, tuple[str, str]]:
    """market id (lower case) -> (title, category) from the positions observed."""
    out: dict[str, tuple[str, str]] = {}
    for p in positions:
        title, category = out.get(p.market_id.lower(), ("", ""))
        out[p.market_id.lower()] = (p.market_title or title, p.category or category)
    return out


def title_of(tx: Tx, catalogue: dict[str, tuple[str, str]]) -> tuple[str, str]:
    """(title, category) of a prediction-market transaction's market: the venue's own row, else the
    positions observed in that market."""
    title, category = catalogue.get(tx.market.lower(), ("", ""))
    raw = tx.raw or {}
    for name in ("title", "question", "market_title", "event_title"):
        value = raw.get(name)
        if isinstance(value, str) and value:
            title = title or value
            if name != "title":
                title = f"{title} {value}" if value not in title else title
    value = raw.get("category")
    if isinstance(value, str) and value and not category:
        category = value
    return title, category


# Where venues name the other side of a transfer. A deposit's ``address`` is the employee's own deposit
# address at the exchange, so for incoming transfers only fields that name the sender count.
_TO_FIELDS = ("toAddress", "to_address", "addressTo", "to", "destination", "address")
_FROM_FIELDS = ("fromAddress", "from_address", "addressFrom", "from", "source")


def counterparties(tx: Tx, own: str) -> list[str]:
    """Addresses on the other side of a transfer, as the venue's own row names them (lower case). The
    connection's own address is left out; a venue that names none gives none."""
    raw = tx.raw or {}
    found: list[str] = []
    for name in (_TO_FIELDS if tx.kind in OUTGOING else _FROM_FIELDS):
        value = raw.get(name)
        if isinstance(value, dict):
            value = value.get("address")
        if isinstance(value, str) and 20 <= len(value) <= 120 and " " not in value.strip():
            address = value.strip().lower()
            if address != own and address not in found:
                found.append(address)
    return found
