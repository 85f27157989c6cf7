"""The employee's side: their tasks, the accounts they declare, the records they add, the certification.

Every function takes the employee id of the portal session (never one from the request) and filters on
it, so another employee's task reads exactly like one that does not exist (NotFound). Declared accounts
and manual entries can change only while the task is open or returned; a certification freezes them.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.errors import Conflict, Invalid, NotFound
from appliance.services.attestations import snapshot
from appliance.services.attestations.campaigns import OUTSTANDING, today
from appliance.services.context import Appliance
from appliance.services.text import CONTROL_MESSAGE, has_control_characters
from appliance.settings import Settings
from appliance.store.base import utcnow
from appliance.store.models import (
    AttestationCampaign,
    AttestationDeclaredAccount,
    AttestationManualEntry,
    AttestationReview,
    AttestationSubmission,
    AttestationTask,
    CodeAcknowledgement,
    CodeVersion,
    Employee,
)

SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
NATURES = ("buy", "sell", "other_acquisition", "other_disposition")
MAX_TEXT = 2000


def my_tasks(session: Session, employee_id: int) -> list[tuple[AttestationTask, AttestationCampaign]]:
    return [(t, c) for t, c in session.execute(select(AttestationTask, AttestationCampaign).join(
        AttestationCampaign, AttestationCampaign.id == AttestationTask.campaign_id).where(
        AttestationTask.employee_id == employee_id).order_by(AttestationTask.due.desc(), AttestationTask.id.desc()))]


def my_task(session: Session, employee_id: int, task_id: int) -> tuple[AttestationTask, AttestationCampaign]:
    row = session.execute(select(AttestationTask, AttestationCampaign).join(
        AttestationCampaign, AttestationCampaign.id == AttestationTask.campaign_id).where(
        AttestationTask.id == task_id, AttestationTask.employee_id == employee_id)).first()
    if row is None:
        raise NotFound("not found")
    return row[0], row[1]


def submissions(session: Session, task_id: int) -> list[AttestationSubmission]:
    return list(session.execute(select(AttestationSubmission).where(
        AttestationSubmission.task_id == task_id).order_by(AttestationSubmission.number)).scalars())


def reviews(session: Session, task_id: int) -> list[AttestationReview]:
    return list(session.execute(select(AttestationReview).where(AttestationReview.task_id == task_id).order_by(
        AttestationReview.id)).scalars())


def _editable(session: Session, employee_id: int, task_id: int) -> tuple[AttestationTask, AttestationCampaign]:
    task, campaign = my_task(session, employee_id, task_id)
    if task.status not in OUTSTANDING:
        raise Conflict(f"this task is {task.status}: nothing can be changed now")
    return task, campaign


def _text(value: Any, field: str, *, required: bool, limit: int, label: str) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise Invalid(f"{label} is text", field=field)
    if has_control_characters(value):
        raise Invalid(f"{label} {CONTROL_MESSAGE}", field=field)
    value = " ".join(value.split())
    if required and not value:
        raise Invalid(f"{label} is required", field=field)
    if len(value) > limit:
        raise Invalid(f"{label} is at most {limit} characters", field=field)
    return value


def declare_account(session: Session, employee_id: int, task_id: int, *, venue: Any, account: Any,
                    reason: Any) -> AttestationDeclaredAccount:
    """An account, wallet or prediction-market account the employee holds that is not connected, and why."""
    task, _c = _editable(session, employee_id, task_id)
    row = AttestationDeclaredAccount(
        task_id=task.id, employee_id=employee_id,
        venue=_text(venue, "venue", required=True, limit=100, label="the venue (exchange, wallet, bank)"),
        account=_text(account, "account", required=False, limit=200, label="the account"),
        reason=_text(reason, "reason", required=True, limit=MAX_TEXT, label="the reason it is not connected"))
    session.add(row)
    session.flush()
    return row


def _amount(value: Any, field: str, *, required: bool, positive: bool = True) -> Decimal | None:
    if value is None or value == "":
        if required:
            raise Invalid(f"{field} is required (a number, e.g. \"1.5\")", field=field)
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Invalid(f"{field} must be a number written as text, e.g. \"1.5\"", field=field)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise Invalid(f"{field} must be a number, e.g. \"1.5\"", field=field) from None
    if not number.is_finite() or abs(number) > Decimal("1e18") or (positive and number <= 0) or number < 0:
        raise Invalid(f"{field} must be a positive number", field=field)
    return number


def add_manual(session: Session, settings: Settings, employee_id: int, task_id: int, data: dict[str, Any]
               ) -> AttestationManualEntry:
    """A record the appliance cannot see: a holding (holdings tasks) or a transaction in the task's period."""
    task, campaign = _editable(session, employee_id, task_id)
    if campaign.kind == "code_acknowledgement":
        raise Invalid("an acknowledgement of the code has no records", field="kind")
    kind = "transaction" if campaign.kind == "quarterly_transactions" else "holding"
    asset = _text(data.get("asset"), "asset", required=True, limit=64, label="the asset")
    if not SYMBOL.match(asset):
        raise Invalid("asset must be a symbol or identifier, e.g. BTC", field="asset")
    occurred: dt.date | None = data.get("date")
    nature = str(data.get("nature") or "")
    if kind == "transaction":
        if not isinstance(occurred, dt.date):
            raise Invalid("date is required for a transaction (YYYY-MM-DD)", field="date")
        assert campaign.period_start is not None and campaign.period_end is not None
        if not campaign.period_start <= occurred <= campaign.period_end:
            raise Invalid(f"the date must fall in {campaign.period} ({campaign.period_start.isoformat()} to "
                          f"{campaign.period_end.isoformat()})", field="date")
        if nature not in NATURES:
            raise Invalid(f"nature must be one of {', '.join(NATURES)}", field="nature")
    else:
        occurred = task.as_of
        nature = ""
    row = AttestationManualEntry(
        task_id=task.id, employee_id=employee_id, kind=kind, asset=asset.upper(),
        identifier=_text(data.get("identifier"), "identifier", required=False, limit=200,
                         label="the chain, contract or market"),
        quantity=_amount(data.get("quantity"), "quantity", required=True),
        price=_amount(data.get("price"), "price", required=False, positive=False),
        principal=_amount(data.get("principal"), "principal", required=False, positive=False),
        currency=settings.valuation.currency,
        venue=_text(data.get("venue"), "venue", required=True, limit=100, label="the venue or wallet"),
        occurred_on=occurred, nature=nature,
        note=_text(data.get("note"), "note", required=False, limit=MAX_TEXT, label="the note"))
    session.add(row)
    session.flush()
    return row


def remove_draft(session: Session, employee_id: int, task_id: int, what: str, row_id: int) -> None:
    """Take back a declared account or a manual entry before certifying (kept, marked removed)."""
    _editable(session, employee_id, task_id)
    model: Any = AttestationDeclaredAccount if what == "declared" else AttestationManualEntry
    row = session.get(model, row_id)
    if row is None or row.task_id != task_id or row.employee_id != employee_id or row.removed_at is not None:
        raise NotFound("not found")
    row.removed_at = utcnow()
    session.flush()


def name_matches(typed: str, name: str) -> bool:
    def norm(text: str) -> str:
        return " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return bool(typed.strip()) and norm(typed) == norm(name)


def submit(session: Session, app: Appliance, employee_id: int, task_id: int, *, typed_name: Any,
           nothing_to_report: bool = False, confirm: bool = True) -> AttestationSubmission:
    """Certify the task "complete and accurate" with the employee's typed name: a frozen snapshot of what the
    task shows now. "Nothing to report" is an answer only when there is nothing: no synced record, no
    manual entry. A code acknowledgement needs no review: it is approved at once."""
    task, campaign = _editable(session, employee_id, task_id)
    employee = session.get(Employee, employee_id)
    if employee is None or employee.status != "active":
        raise NotFound("not found")
    if not confirm:
        raise Invalid("confirm that the report is complete and accurate", field="confirm")
    typed = _text(typed_name, "typed_name", required=True, limit=200, label="your name")
    if not name_matches(typed, employee.name):
        raise Invalid("the typed name must be your name exactly as shown on this page", field="typed_name")
    content = snapshot.view(session, app, task, campaign)
    if nothing_to_report and (content.records or content.manual or content.declared):
        raise Invalid(f"\"nothing to report\" is not an answer here: the task lists {len(content.records)} record(s), "
                      f"{len(content.manual)} manual entr(ies) and {len(content.declared)} declared account(s)",
                      field="nothing_to_report")
    now = utcnow()
    extra: dict[str, Any] = {}
    ack: CodeAcknowledgement | None = None
    if campaign.kind == "code_acknowledgement":
        version = session.get(CodeVersion, campaign.code_version_id) if campaign.code_version_id else None
        if version is None:
            raise NotFound("not found")
        extra["code"] = {"version": version.version, "title": version.title, "sha256": version.sha256}
        ack = CodeAcknowledgement(code_version_id=version.id, employee_id=employee_id, task_id=task.id,
                                  typed_name=typed, acknowledged_at=now)
    doc, digest = snapshot.freeze(task, campaign, employee, content, nothing_to_report=nothing_to_report,
                                  typed_name=typed, submitted_at=now, extra=extra)
    number = (session.execute(select(func.max(AttestationSubmission.number)).where(
        AttestationSubmission.task_id == task.id)).scalar_one() or 0) + 1
    row = AttestationSubmission(task_id=task.id, employee_id=employee_id, number=number, submitted_at=now,
                                nothing_to_report=nothing_to_report, typed_name=typed, snapshot=doc,
                                snapshot_sha256=digest, status="submitted")
    session.add(row)
    task.status = "submitted"
    task.submitted_at = now
    if task.first_submitted_at is None:
        task.first_submitted_at = now
    if ack is not None:
        if session.execute(select(CodeAcknowledgement.id).where(
                CodeAcknowledgement.code_version_id == ack.code_version_id,
                CodeAcknowledgement.employee_id == employee_id)).first() is None:
            session.add(ack)
        row.status = task.status = "approved"
        task.reviewed_at = now
    session.flush()
    return row


def is_due_soon(task: AttestationTask, days: int = 7) -> bool:
    return task.status in OUTSTANDING and task.due - today() <= dt.timedelta(days=days)
