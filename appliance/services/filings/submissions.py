"""What the reports take from the certifications (store/models/attestations.py): the date each access person
submitted the report covering a period or a day, the manual entries they certified (always marked manual),
the accounts they declared but did not connect, and the late-report list (days late, to the day).

"Late" is derived, never stored, by services/attestations (one definition for the review pages, the API and
these reports)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.rbac.actors import Actor
from appliance.services.filings.periods import Period
from appliance.services.scope import flagged_employee_ids_query
from appliance.store.base import utcnow
from appliance.store.models import (
    AttestationCampaign,
    AttestationDeclaredAccount,
    AttestationSubmission,
    AttestationTask,
    Employee,
)

HOLDINGS_KINDS = ("initial_holdings", "annual_holdings")
NATURES = {"buy": "buy", "sell": "sell", "other_acquisition": "other acquisition",
           "other_disposition": "other disposition"}
LATE_COLUMNS = ["employee_external_id", "employee", "campaign", "kind", "period", "due", "status",
                "first_submitted_at", "days_late"]


def _tasks(session: Session, kind: str, period: Period | None, day: dt.date | None) -> Any:
    stmt = select(AttestationTask, AttestationCampaign).join(
        AttestationCampaign, AttestationCampaign.id == AttestationTask.campaign_id)
    if kind == "holdings":
        stmt = stmt.where(AttestationCampaign.kind.in_(HOLDINGS_KINDS))
        if day is not None:
            stmt = stmt.where((AttestationTask.as_of == day) | (
                AttestationTask.as_of.is_(None) & (AttestationCampaign.as_of == day)))
    else:
        stmt = stmt.where(AttestationCampaign.kind == kind)
        if period is not None:
            stmt = stmt.where(AttestationCampaign.period_start >= period.first,
                              AttestationCampaign.period_end <= period.last)
    return stmt


def submitted_at(session: Session, kind: str, period: Period | None, day: dt.date | None) -> dict[int, dt.datetime]:
    """Employee id -> when they submitted the certification covering the report (the latest submission)."""
    out: dict[int, dt.datetime] = {}
    for task, _campaign in session.execute(_tasks(session, kind, period, day)).all():
        if task.submitted_at is not None and (task.employee_id not in out or task.submitted_at > out[task.employee_id]):
            out[task.employee_id] = task.submitted_at
    return out


def _submitted_task_ids(session: Session, kind: str, period: Period | None, day: dt.date | None) -> list[int]:
    return [t.id for t, _c in session.execute(_tasks(session, kind, period, day)).all()
            if t.first_submitted_at is not None]


def _visible(session: Session, actor: Actor, permission: str) -> set[int] | None:
    """None: every employee; else the flagged employees' ids."""
    if actor.scope_for(permission) == "all":
        return None
    if actor.scope_for(permission) is None:
        return set()
    return {int(i) for i in session.execute(flagged_employee_ids_query()).scalars()}


def _certified_manual(session: Session, actor: Actor, permission: str, task_ids: list[int], kind: str
                      ) -> list[tuple[int, dict[str, Any]]]:
    """(employee id, entry) of each manual entry of ``kind`` in the latest submission of each task: what the
    employee certified (the frozen snapshot), not the working rows they may edit after a return."""
    visible = _visible(session, actor, permission)
    latest: dict[int, AttestationSubmission] = {}
    for start in range(0, len(task_ids), 500):
        for sub in session.execute(select(AttestationSubmission).where(
                AttestationSubmission.task_id.in_(task_ids[start:start + 500]))).scalars():
            if sub.task_id not in latest or sub.number > latest[sub.task_id].number:
                latest[sub.task_id] = sub
    out: list[tuple[int, dict[str, Any]]] = []
    for sub in sorted(latest.values(), key=lambda s: s.id):
        if visible is not None and sub.employee_id not in visible:
            continue
        entries = (sub.snapshot or {}).get("manual") or []
        out.extend((sub.employee_id, e) for e in entries if isinstance(e, dict) and e.get("kind") == kind)
    return out


def _number(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except ArithmeticError:
        return None


def _day(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def manual_transaction_rows(session: Session, actor: Actor, period: Period, employees: dict[int, Employee],
                            currency: str, submitted: dict[int, dt.datetime]) -> list[list[Any]]:
    """The transactions employees added by hand to their certified reports of the period (rows in
    rows.TRANSACTION_COLUMNS' order, provenance ``manual``)."""
    rows: list[list[Any]] = []
    task_ids = _submitted_task_ids(session, "quarterly_transactions", None, None)
    for employee_id, entry in _certified_manual(session, actor, "transactions:export", task_ids, "transaction"):
        day = _day(entry.get("date"))
        if day is None or not period.first <= day <= period.last:
            continue
        person = employees.get(employee_id)
        principal = _number(entry.get("principal"))
        when = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        nature = str(entry.get("nature") or "")
        rows.append([person.external_id or "" if person else "", person.name if person else "",
                     bool(person.access_person) if person else False, when, NATURES.get(nature, nature),
                     nature or "other", str(entry.get("asset") or ""), "manual entry",
                     str(entry.get("identifier") or ""), "", _number(entry.get("quantity")),
                     _number(entry.get("price")), principal, str(entry.get("currency") or currency), None, None,
                     None, None, str(entry.get("venue") or ""), str(entry.get("venue") or ""),
                     f"manual-{entry.get('id', '')}", "manual", True, submitted.get(employee_id), "manual",
                     "" if principal is not None else "entered without an amount",
                     "declared by the employee, not read from a venue"])
    return rows


def manual_holding_rows(session: Session, actor: Actor, day: dt.date, employees: dict[int, Employee],
                        currency: str, submitted: dict[int, dt.datetime]) -> list[list[Any]]:
    """Holdings employees added by hand to their certified holdings reports as of ``day`` (rows in
    rows.HOLDING_COLUMNS' order)."""
    rows: list[list[Any]] = []
    task_ids = _submitted_task_ids(session, "holdings", None, day)
    for employee_id, entry in _certified_manual(session, actor, "balances:export", task_ids, "holding"):
        person = employees.get(employee_id)
        principal = _number(entry.get("principal"))
        rows.append([person.external_id or "" if person else "", person.name if person else "",
                     bool(person.access_person) if person else False, day, "manual", str(entry.get("asset") or ""),
                     "manual entry", str(entry.get("identifier") or ""), "", "", _number(entry.get("quantity")),
                     _number(entry.get("price")), principal, str(entry.get("currency") or currency),
                     str(entry.get("venue") or ""), str(entry.get("venue") or ""), "manual", None, 0, "manual",
                     "" if principal is not None else "entered without an amount", submitted.get(employee_id),
                     "declared by the employee, not read from a venue"])
    return rows


def declared_accounts(session: Session, employee_ids: set[int] | None) -> dict[int, list[str]]:
    """Accounts employees declared as held but not connected, with their reasons (on every report's gaps)."""
    out: dict[int, list[str]] = defaultdict(list)
    stmt = select(AttestationDeclaredAccount).where(AttestationDeclaredAccount.removed_at.is_(None))
    for row in session.execute(stmt.order_by(AttestationDeclaredAccount.id)).scalars():
        if employee_ids is not None and row.employee_id not in employee_ids:
            continue
        text = f"declared, not connected: {row.venue}{' ' + row.account if row.account else ''} ({row.reason[:200]})"
        if text not in out[row.employee_id]:
            out[row.employee_id].append(text)
    return out


def late_rows(session: Session, *, today: dt.date | None = None) -> list[list[Any]]:
    """Every late report (services/attestations' late list: still outstanding, most overdue first, then those
    filed after their due date), in LATE_COLUMNS' order."""
    from appliance.services.attestations.review import late_list

    rows: list[list[Any]] = []
    for late in late_list(session, on=today or utcnow().date()):
        status = "late" if late.outstanding else late.task.status
        rows.append([late.employee.external_id or "", late.employee.name, late.campaign.title, late.campaign.kind,
                     late.campaign.period, late.task.due, status, late.task.first_submitted_at, late.days])
    return rows


def submissions_of(session: Session, period: Period) -> list[tuple[AttestationSubmission, AttestationTask,
                                                                    AttestationCampaign, Employee]]:
    """Every submission made in the period or certifying it (for the examination pack)."""
    stmt = (select(AttestationSubmission, AttestationTask, AttestationCampaign, Employee)
            .join(AttestationTask, AttestationTask.id == AttestationSubmission.task_id)
            .join(AttestationCampaign, AttestationCampaign.id == AttestationTask.campaign_id)
            .join(Employee, Employee.id == AttestationSubmission.employee_id)
            .order_by(AttestationSubmission.id))
    out = []
    for sub, task, campaign, person in session.execute(stmt).all():
        covers = (campaign.period_start is not None and campaign.period_end is not None
                  and campaign.period_start <= period.last and campaign.period_end >= period.first)
        as_of = task.as_of or campaign.as_of
        if covers or (as_of is not None and period.first <= as_of <= period.last) or (
                period.since <= sub.submitted_at < period.until):
            out.append((sub, task, campaign, person))
    return out
