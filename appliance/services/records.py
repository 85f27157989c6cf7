"""Reading what employees hold and did, under the caller's scope.

Every function takes the permission it serves (``balances:read``, ``transactions:export``...)
and applies the actor's scope for it: ``all`` or ``flagged`` (see scope.py). Nothing here ever
returns a record of an employee the actor may not see.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from appliance.errors import Invalid
from appliance.rbac.actors import Actor
from appliance.services.scope import flagged_employee_ids_query, require_employee_visible, visible_scope
from appliance.store.models import BalanceSnapshot, Connection, PredictionPosition, Transaction

S = TypeVar("S", bound="Select")


def _scoped(stmt: S, actor: Actor, permission: str) -> S:
    if visible_scope(actor, permission) == "flagged":
        stmt = stmt.where(Connection.employee_id.in_(flagged_employee_ids_query()))
    return stmt


def current_balances(session: Session, actor: Actor, *, permission: str = "balances:read",
                     employee_id: int | None = None) -> list[tuple[BalanceSnapshot, Connection]]:
    if employee_id is not None:
        require_employee_visible(session, actor, permission, employee_id)
    stmt = (select(BalanceSnapshot, Connection).join(Connection, Connection.id == BalanceSnapshot.connection_id)
            .where(BalanceSnapshot.valid_to.is_(None)).order_by(Connection.id, BalanceSnapshot.asset))
    if employee_id is not None:
        stmt = stmt.where(Connection.employee_id == employee_id)
    return [(b, c) for b, c in session.execute(_scoped(stmt, actor, permission)).all()]


# Transfers that moved funds. Pending, failed and cancelled ones are listed with their status, but never
# counted: balances, reconciliation and reports count completed ones only.
COUNTED = Transaction.status == "completed"


def _transactions_matching(employee_id: int | None, since: dt.datetime | None, until: dt.datetime | None
                           ) -> Select[Transaction, Connection]:
    stmt = select(Transaction, Connection).join(Connection, Connection.id == Transaction.connection_id)
    if employee_id is not None:
        stmt = stmt.where(Connection.employee_id == employee_id)
    if since is not None:
        stmt = stmt.where(Transaction.occurred_at >= since)
    if until is not None:
        stmt = stmt.where(Transaction.occurred_at < until)
    return stmt


def transactions(session: Session, actor: Actor, *, permission: str = "transactions:read",
                 employee_id: int | None = None, since: dt.datetime | None = None, until: dt.datetime | None = None,
                 limit: int = 500, before_id: int | None = None, venue: str | None = None,
                 asset: str | None = None, kind: str | None = None) -> list[tuple[Transaction, Connection]]:
    if employee_id is not None:
        require_employee_visible(session, actor, permission, employee_id)
    if not 1 <= limit <= 5000:
        raise Invalid("limit is 1 to 5000", field="limit")
    stmt = _transactions_matching(employee_id, since, until).order_by(Transaction.id.desc()).limit(limit)
    if before_id is not None:
        stmt = stmt.where(Transaction.id < before_id)
    if venue:
        stmt = stmt.where(Connection.venue == venue)
    if asset:
        stmt = stmt.where(Transaction.asset == asset)
    if kind:
        stmt = stmt.where(Transaction.kind == kind)
    return [(t, c) for t, c in session.execute(_scoped(stmt, actor, permission)).all()]


def iter_transactions(session: Session, actor: Actor, *, permission: str = "transactions:export",
                      employee_id: int | None = None, since: dt.datetime | None = None,
                      until: dt.datetime | None = None, completed_only: bool = False
                      ) -> Iterator[tuple[Transaction, Connection]]:
    """All matching transactions in id order, streamed (constant memory), for exports (``completed_only``:
    the movements that happened, for reports that count them)."""
    if employee_id is not None:
        require_employee_visible(session, actor, permission, employee_id)
    stmt = _transactions_matching(employee_id, since, until).order_by(Transaction.id).execution_options(yield_per=1000)
    if completed_only:
        stmt = stmt.where(COUNTED)
    for row in session.execute(_scoped(stmt, actor, permission)):
        yield row[0], row[1]


def current_positions(session: Session, actor: Actor, *, permission: str = "predictions:read",
                      employee_id: int | None = None) -> list[tuple[PredictionPosition, Connection]]:
    if employee_id is not None:
        require_employee_visible(session, actor, permission, employee_id)
    stmt = (select(PredictionPosition, Connection)
            .join(Connection, Connection.id == PredictionPosition.connection_id)
            .where(PredictionPosition.valid_to.is_(None)).order_by(PredictionPosition.market_title))
    if employee_id is not None:
        stmt = stmt.where(Connection.employee_id == employee_id)
    return [(p, c) for p, c in session.execute(_scoped(stmt, actor, permission)).all()]


def one_record(session: Session, actor: Actor, kind: str, employee_id: int, record_id: int) -> tuple[Any, Connection]:
    """One transaction, prediction position or balance observation of an employee, under the actor's
    scope for that kind (NotFound when it does not exist, is someone else's, or is out of scope)."""
    from appliance.errors import NotFound

    model: Any = {"transaction": Transaction, "position": PredictionPosition, "balance": BalanceSnapshot}.get(kind)
    permission = {"transaction": "transactions:read", "position": "predictions:read",
                  "balance": "balances:read"}.get(kind)
    if model is None or permission is None:
        raise NotFound("not found")
    require_employee_visible(session, actor, permission, employee_id)
    row = session.execute(select(model, Connection).join(Connection, Connection.id == model.connection_id).where(
        model.id == record_id, Connection.employee_id == employee_id)).first()
    if row is None:
        raise NotFound("not found")
    return row[0], row[1]
