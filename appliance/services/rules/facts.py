"""Reading the records rules look at, as plain rows (SQLAlchemy Core, only the columns needed), in
batches of employees or by id for the records a sync just stored."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, case, null, or_, select
from sqlalchemy.orm import Session

from appliance.services.rules.groups import groups_of
from appliance.store.models import BalanceSnapshot, Connection, Employee, PredictionPosition, Transaction
from appliance.store.params import dialect_of, one_of

T = TypeVar("T")

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


def chunks(ids: Sequence[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


# The statements below are built once per dialect, with their values as parameters (lists as one parameter,
# store/params.py): building a statement costs ten times more than executing a built one, and a sync's
# evaluation runs a dozen.

@functools.cache
def _people_statement(dialect: str, every: bool) -> Any:
    stmt = select(Employee.id, Employee.name, Employee.department).order_by(Employee.id)
    return stmt if every else stmt.where(one_of(Employee.id, "ids", dialect))


def people(session: Session, employee_ids: Sequence[int] | None = None) -> dict[int, Person]:
    rows: list[Any] = []
    connection = session.connection()
    if employee_ids is None:
        rows = list(connection.execute(_people_statement(dialect_of(session), True)))
    else:
        for part in chunks(list(employee_ids), 900):
            rows.extend(connection.execute(_people_statement(dialect_of(session), False), {"ids": part}))
    groups = groups_of(session, [r[0] for r in rows])
    return {r[0]: Person(r[0], r[1], r[2] or "", groups.get(r[0], frozenset())) for r in rows}


_ACCOUNT_COLUMNS = (Connection.id, Connection.employee_id, Connection.kind, Connection.venue, Connection.label,
                    Connection.address)


@functools.cache
def _accounts_statement(by: str, dialect: str = "") -> Any:
    stmt = select(*_ACCOUNT_COLUMNS)
    if by == "employee":
        return stmt.where(one_of(Connection.employee_id, "ids", dialect))
    if by == "connection":
        return stmt.where(one_of(Connection.id, "ids", dialect))
    if by == "owner":
        owner = select(Connection.employee_id).where(Connection.id == bindparam("cid")).scalar_subquery()
        return stmt.where(Connection.employee_id == owner)
    if by == "owners":
        owners = select(Connection.employee_id).where(Connection.id.in_(bindparam("ids", expanding=True)))
        return stmt.where(Connection.employee_id.in_(owners.correlate(None)))
    return stmt


def accounts(session: Session, employee_ids: Sequence[int] | None = None,
             connection_ids: Sequence[int] | None = None) -> dict[int, Account]:
    out: dict[int, Account] = {}
    connection = session.connection()
    if employee_ids is None and connection_ids is None:
        return {r[0]: Account(*r) for r in connection.execute(_accounts_statement("all"))}
    by, ids = ("employee", employee_ids) if employee_ids is not None else ("connection", connection_ids)
    for part in chunks(list(ids or []), 900):
        out.update({r[0]: Account(*r) for r in connection.execute(_accounts_statement(by, dialect_of(session)),
                                                                  {"ids": part})})
    return out


def accounts_of_owner(session: Session, connection_id: int) -> dict[int, Account]:
    """Every connection of the employee who owns this one (one statement)."""
    return {r[0]: Account(*r) for r in session.connection().execute(_accounts_statement("owner"),
                                                                      {"cid": connection_id})}


def accounts_of_owners(session: Session, connection_ids: Sequence[int]) -> dict[int, Account]:
    """Every connection of the employees who own these (a statement per 900 connections)."""
    out: dict[int, Account] = {}
    connection = session.connection()
    for part in chunks(list(connection_ids), 900):
        out.update({r[0]: Account(*r) for r in connection.execute(_accounts_statement("owners"), {"ids": part})})
    return out


_TX_COLUMNS = (Transaction.id, Transaction.connection_id, Transaction.kind, Transaction.occurred_at, Transaction.asset,
               Transaction.amount, Transaction.market, Transaction.quote_asset, Transaction.quote_amount)


@functools.cache
def _tx_statement(dialect: str, kinds: bool, assets: bool, since: bool, ids: bool, raw: bool = False) -> Any:
    columns: tuple[Any, ...] = _TX_COLUMNS
    if raw:
        # The venue's own row, only for the kinds and connections that need it (JSON decoded per row).
        wanted = or_(one_of(Transaction.kind, "raw_kinds", dialect),
                     one_of(Transaction.connection_id, "raw_conns", dialect))
        columns = (*columns, case((wanted, Transaction.raw), else_=null()))
    stmt = select(*columns).where(one_of(Transaction.connection_id, "conns", dialect),
                                  Transaction.orphaned.is_(False))
    if kinds:
        stmt = stmt.where(one_of(Transaction.kind, "kinds", dialect))
    if assets:
        stmt = stmt.where(one_of(Transaction.asset, "assets", dialect))
    if since:
        stmt = stmt.where(Transaction.id > bindparam("since"))
    if ids:
        stmt = stmt.where(one_of(Transaction.id, "ids", dialect))
    return stmt.order_by(Transaction.occurred_at, Transaction.id)


def transactions_of_connections(session: Session, connection_ids: Iterable[int], *,
                                kinds: Iterable[str] | None = None, assets: Iterable[str] | None = None,
                                since_id: int = 0, ids: Sequence[int] | None = None,
                                raw_of: tuple[Iterable[str], Iterable[int]] | None = None) -> list[Tx]:
    """Transactions of these connections in time order (orphaned chain rows left out: a reorg undid them).
    Core on the session's connection: plain rows, none of the ORM's per-row work (millions of rows).
    ``raw_of`` (kinds, connections): the venue's own row is read too for transactions of these kinds or on
    these connections (as ``attach_raw`` would, in the same statement)."""
    conns = list(connection_ids)
    if not conns:
        return []
    params: dict[str, Any] = {"conns": conns}
    if kinds is not None:
        params["kinds"] = sorted(kinds)
    if assets is not None:
        params["assets"] = sorted(assets)
    if since_id:
        params["since"] = since_id
    if ids is not None:
        params["ids"] = list(ids)
    if raw_of is not None:
        params["raw_kinds"], params["raw_conns"] = sorted(raw_of[0]), sorted(raw_of[1])
    stmt = _tx_statement(dialect_of(session), kinds is not None, assets is not None, bool(since_id), ids is not None,
                         raw_of is not None)
    rows = session.connection().execute(stmt, params).all()
    if raw_of is None:
        return [Tx(*r) for r in rows]
    out = []
    for r in rows:
        tx = Tx(*r[:9])
        tx.raw = r[9] if isinstance(r[9], dict) else None
        out.append(tx)
    return out


AFTER_BATCH = 100  # connections per statement of ``transactions_after``


@functools.cache
def _after_statement(n: int, orm: bool) -> Any:
    """Transactions of n connections, each after its own id (built once per n: its shape depends on n)."""
    after = or_(*(and_(Transaction.connection_id == bindparam(f"c{i}"), Transaction.id > bindparam(f"s{i}"))
                  for i in range(n)))
    stmt = select(Transaction) if orm else select(*_TX_COLUMNS)
    return stmt.where(after, Transaction.orphaned.is_(False)).order_by(Transaction.occurred_at, Transaction.id)


def transactions_after(session: Session, since: dict[int, int], *, kinds: Iterable[str] | None = None,
                       orm: bool = False) -> dict[int, list[Any]]:
    """connection -> its transactions with ids above its own mark (``since``: connection -> id), in time order:
    the records several syncs stored, a statement per AFTER_BATCH connections. ``orm``: as entities."""
    out: dict[int, list[Any]] = {cid: [] for cid in since}
    wanted = frozenset(kinds) if kinds is not None else None
    items = sorted(since.items())
    connection = session.connection()
    for start in range(0, len(items), AFTER_BATCH):
        part = items[start:start + AFTER_BATCH]
        params = {f"c{i}": cid for i, (cid, _) in enumerate(part)} | {f"s{i}": s for i, (_, s) in enumerate(part)}
        stmt = _after_statement(len(part), orm)
        rows = session.execute(stmt, params).scalars() if orm else (Tx(*r) for r in connection.execute(stmt, params))
        for row in rows:
            if wanted is None or row.kind in wanted:
                out[row.connection_id].append(row)
    return out


@functools.cache
def _raw_statement(dialect: str) -> Any:
    return select(Transaction.id, Transaction.raw).where(one_of(Transaction.id, "ids", dialect))


def attach_raw(session: Session, rows: Sequence[Tx]) -> None:
    """Load the venue's own row (counterparty addresses, a market's title) for these transactions only."""
    wanted = {r.id: r for r in rows}
    connection = session.connection()
    for part in chunks(list(wanted), 900):
        for tx_id, raw in connection.execute(_raw_statement(dialect_of(session)), {"ids": part}):
            wanted[tx_id].raw = raw if isinstance(raw, dict) else None


@functools.cache
def _positions_statement(dialect: str) -> Any:
    return select(
        PredictionPosition.id, PredictionPosition.connection_id, PredictionPosition.market_id,
        PredictionPosition.market_title, PredictionPosition.category, PredictionPosition.outcome,
        PredictionPosition.size, PredictionPosition.avg_price, PredictionPosition.current_value,
        PredictionPosition.valid_from).where(one_of(PredictionPosition.connection_id, "conns", dialect)).order_by(
        PredictionPosition.connection_id, PredictionPosition.market_id, PredictionPosition.outcome,
        PredictionPosition.id)


def positions_of_connections(session: Session, connection_ids: Iterable[int]) -> list[Position]:
    conns = list(connection_ids)
    if not conns:
        return []
    return [Position(*r) for r in session.connection().execute(_positions_statement(dialect_of(session)),
                                                                    {"conns": conns})]


@functools.cache
def _snapshots_statement(dialect: str, assets: str) -> Any:
    stmt = select(BalanceSnapshot.id, BalanceSnapshot.connection_id, BalanceSnapshot.asset, BalanceSnapshot.account,
                  BalanceSnapshot.amount, BalanceSnapshot.valid_from, BalanceSnapshot.valid_to).where(
        one_of(BalanceSnapshot.connection_id, "conns", dialect))
    if assets == "listed":
        stmt = stmt.where(one_of(BalanceSnapshot.asset, "assets", dialect))
    elif assets in ("changed_after", "changed_ids"):
        # The assets of the balances one connection stored after an id, or with these ids.
        changed = select(BalanceSnapshot.asset).where(BalanceSnapshot.connection_id == bindparam("cid"))
        changed = changed.where(BalanceSnapshot.id > bindparam("after")) if assets == "changed_after" else \
            changed.where(one_of(BalanceSnapshot.id, "ids", dialect))
        stmt = stmt.where(BalanceSnapshot.asset.in_(changed.scalar_subquery()))
    return stmt.order_by(BalanceSnapshot.connection_id, BalanceSnapshot.asset, BalanceSnapshot.account,
                         BalanceSnapshot.id)


def snapshots_of_connections(session: Session, connection_ids: Iterable[int], *,
                             assets: Iterable[str] | None = None, changed_after: tuple[int, int] | None = None,
                             changed_ids: tuple[int, Sequence[int]] | None = None) -> list[Snapshot]:
    """Balance observations of these connections: all, or of the ``assets`` named, or of the assets whose
    balances one connection stored after an id (``changed_after``: connection, id) or with these ids
    (``changed_ids``: connection, ids)."""
    conns = list(connection_ids)
    if not conns:
        return []
    params: dict[str, Any] = {"conns": conns}
    shape = "all"
    if assets is not None:
        shape, params["assets"] = "listed", sorted(assets)
    elif changed_after is not None:
        shape, params["cid"], params["after"] = "changed_after", *changed_after
    elif changed_ids is not None:
        shape, params["cid"], params["ids"] = "changed_ids", changed_ids[0], list(changed_ids[1])
    stmt = _snapshots_statement(dialect_of(session), shape)
    return [Snapshot(*r) for r in session.connection().execute(stmt, params)]


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
