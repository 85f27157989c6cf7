"""What an employee signed in to the portal may read: their own records, and nothing else.

Every function takes the employee id of the session (never one from the request) and filters on it in the
query itself, so another employee's record reads exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.errors import NotFound
from appliance.store.models import (
    BalanceSnapshot,
    Connection,
    Employee,
    PreclearanceMatch,
    PreclearanceRequest,
    PredictionPosition,
    Transaction,
)

# What the firm can see about the employee: stated on the portal and in GET /api/v1/me.
WHAT_THE_FIRM_SEES = (
    "Your name, work e-mail address and department, as HR gave them to compliance.",
    "The connections you added: the venue, the key's fingerprint and its read-only scope (never the key or "
    "secret in clear: they are sealed with the firm's key and only the polling reads them), wallet addresses.",
    "Balances, trades, deposits, withdrawals and prediction-market positions these connections report.",
    "Your pre-clearance requests and their decisions, and how each trade matched them.",
    "Compliance staff see financial detail only as their role allows (some only for employees with an open "
    "alert), and every look is recorded in a tamper-evident audit trail.",
    "Nothing here can move funds: keys must be read-only, and venues never learn your name or e-mail.",
)
BROKEN = ("broken", "reonboarding_required", "degraded")


def profile(session: Session, employee_id: int) -> Employee:
    employee = session.get(Employee, employee_id)
    if employee is None:
        raise NotFound("not found")
    return employee


def connections(session: Session, employee_id: int) -> list[Connection]:
    """The employee's connections; keys replaced by newer ones and refused attempts (a key that was not
    read-only: nothing of it was stored) are left out."""
    return list(session.execute(select(Connection).where(
        Connection.employee_id == employee_id, Connection.status.not_in(("superseded", "rejected"))).order_by(
        Connection.id)).scalars())


def holdings(session: Session, employee_id: int) -> list[tuple[BalanceSnapshot, Connection]]:
    stmt = (select(BalanceSnapshot, Connection).join(Connection, Connection.id == BalanceSnapshot.connection_id)
            .where(Connection.employee_id == employee_id, BalanceSnapshot.valid_to.is_(None))
            .order_by(Connection.id, BalanceSnapshot.asset))
    return [(b, c) for b, c in session.execute(stmt).all()]


def transactions(session: Session, employee_id: int, *, limit: int = 500, before_id: int | None = None
                 ) -> list[tuple[Transaction, Connection]]:
    stmt = (select(Transaction, Connection).join(Connection, Connection.id == Transaction.connection_id)
            .where(Connection.employee_id == employee_id).order_by(Transaction.id.desc()).limit(limit))
    if before_id is not None:
        stmt = stmt.where(Transaction.id < before_id)
    return [(t, c) for t, c in session.execute(stmt).all()]


def transaction(session: Session, employee_id: int, transaction_id: int) -> tuple[Transaction, Connection]:
    row = session.execute(select(Transaction, Connection).join(Connection, Connection.id == Transaction.connection_id)
                          .where(Connection.employee_id == employee_id, Transaction.id == transaction_id)).first()
    if row is None:
        raise NotFound("not found")
    return row[0], row[1]


def positions(session: Session, employee_id: int) -> list[tuple[PredictionPosition, Connection]]:
    stmt = (select(PredictionPosition, Connection).join(Connection, Connection.id == PredictionPosition.connection_id)
            .where(Connection.employee_id == employee_id, PredictionPosition.valid_to.is_(None))
            .order_by(Connection.id, PredictionPosition.market_id))
    return [(p, c) for p, c in session.execute(stmt).all()]


def matches(session: Session, record_type: str, record_ids: list[int]) -> dict[int, PreclearanceMatch]:
    """The pre-clearance outcome of each record (absent: not matched yet, or not a trade)."""
    out: dict[int, PreclearanceMatch] = {}
    for start in range(0, len(record_ids), 900):
        part = record_ids[start:start + 900]
        for row in session.execute(select(PreclearanceMatch).where(
                PreclearanceMatch.record_type == record_type, PreclearanceMatch.record_id.in_(part))).scalars():
            out[row.record_id] = row
    return out


def match_json(row: PreclearanceMatch | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"status": row.status, "request_id": row.request_id}


def requests(session: Session, employee_id: int) -> list[PreclearanceRequest]:
    return list(session.execute(select(PreclearanceRequest).where(
        PreclearanceRequest.employee_id == employee_id).order_by(PreclearanceRequest.id.desc())).scalars())


def request(session: Session, employee_id: int, request_id: int) -> PreclearanceRequest:
    row = session.get(PreclearanceRequest, request_id)
    if row is None or row.employee_id != employee_id:
        raise NotFound("not found")
    return row
