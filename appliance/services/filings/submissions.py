"""What the reports take from the certifications (store/models/attestations.py): the date each access person
submitted the report covering a period or a day, the manual entries they certified (always marked manual),
the accounts they declared but did not connect, and the late-report list (days late, to the day).

"Late" is derived, never stored, by services/attestations (one definition for the review pages, the API and
these reports)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
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
    AttestationManualEntry,
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


def manual_transaction_rows(session: Session, actor: Actor, period: Period, employees: dict[int, Employee],
                            currency: str, submitted: dict[int, dt.datetime]) -> list[list[Any]]:
    """The transactions employees added by hand to a submitted certification of the period (rows in
    rows.TRANSACTION_COLUMNS' order, provenance ``manual``)."""
    task_ids = _submitted_task_ids(session, "quarterly_transactions", None, None)
    visible = _visible(session, actor, "transactions:export")
    rows: list[list[Any]] = []
    if not task_ids:
        return rows
    for entry in session.execute(select(AttestationManualEntry).where(
            AttestationManualEntry.task_id.in_(task_ids), AttestationManualEntry.kind == "transaction",
            AttestationManualEntry.removed_at.is_(None)).order_by(AttestationManualEntry.id)).scalars():
        if visible is not None and entry.employee_id not in visible:
            continue
        if entry.occurred_on is None or not period.first <= entry.occurred_on <= period.last:
            continue
        person = employees.get(entry.employee_id)
        when = dt.datetime(entry.occurred_on.year, entry.occurred_on.month, entry.occurred_on.day, tzinfo=dt.UTC)
        rows.append([person.external_id or "" if person else "", person.name if person else "",
                     bool(person.access_person) if person else False, when, NATURES.get(entry.nature, entry.nature),
                     entry.nature or "other", entry.asset, "manual entry", entry.identifier, "", entry.quantity,
                     entry.price, entry.principal, entry.currency or currency, None, None, None, None, entry.venue,
                     entry.venue, f"manual-{entry.id}", "manual", True, submitted.get(entry.employee_id), "manual",
                     "" if entry.principal is not None else "entered without an amount",
                     "declared by the employee, not read from a venue"])
    return rows


def manual_holding_rows(session: Session, actor: Actor, day: dt.date, employees: dict[int, Employee],
                        currency: str, submitted: dict[int, dt.datetime]) -> list[list[Any]]:
    """Holdings employees added by hand to a submitted holdings certification as of ``day`` (rows in
    rows.HOLDING_COLUMNS' order)."""
    task_ids = _submitted_task_ids(session, "holdings", None, day)
    visible = _visible(session, actor, "balances:export")
    rows: list[list[Any]] = []
    if not task_ids:
        return rows
    for entry in session.execute(select(AttestationManualEntry).where(
            AttestationManualEntry.task_id.in_(task_ids), AttestationManualEntry.kind == "holding",
            AttestationManualEntry.removed_at.is_(None)).order_by(AttestationManualEntry.id)).scalars():
        if visible is not None and entry.employee_id not in visible:
            continue
        person = employees.get(entry.employee_id)
        rows.append([person.external_id or "" if person else "", person.name if person else "",
                     bool(person.access_person) if person else False, day, "manual", entry.asset, "manual entry",
                     entry.identifier, "", "", entry.quantity, entry.price, entry.principal,
                     entry.currency or currency, entry.venue, entry.venue, "manual", None, 0, "manual",
                     "" if entry.principal is not None else "entered without an amount",
                     submitted.get(entry.employee_id), "declared by the employee, not read from a venue"])
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
