"""Compliance's side: submissions to review, opening one (which flags the employee for the review),
approving or returning it with a comment, and the late list."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.errors import Conflict, Invalid, NotFound
from appliance.rbac.actors import Actor
from appliance.services import alerts
from appliance.services.attestations.campaigns import OUTSTANDING, days_late, today
from appliance.services.mailer import Mailer
from appliance.services.notifications import link
from appliance.settings import Settings
from appliance.store.base import utcnow
from appliance.store.models import (
    Alert,
    AttestationCampaign,
    AttestationReview,
    AttestationSubmission,
    AttestationTask,
    Employee,
)

REVIEW_ALERT = "attestation_review"
MAX_COMMENT = 5000


@dataclass(frozen=True)
class Submitted:
    submission: AttestationSubmission
    task: AttestationTask
    campaign: AttestationCampaign
    employee: Employee


def _row(session: Session, submission: AttestationSubmission) -> Submitted:
    task = session.get(AttestationTask, submission.task_id)
    assert task is not None
    campaign = session.get(AttestationCampaign, task.campaign_id)
    employee = session.get(Employee, submission.employee_id)
    assert campaign is not None and employee is not None
    return Submitted(submission, task, campaign, employee)


def get(session: Session, submission_id: int) -> Submitted:
    submission = session.get(AttestationSubmission, submission_id)
    if submission is None:
        raise NotFound("not found")
    return _row(session, submission)


def awaiting(session: Session, *, limit: int = 500) -> list[Submitted]:
    """Submissions waiting for a decision, oldest first."""
    rows = session.execute(select(AttestationSubmission).where(AttestationSubmission.status == "submitted").order_by(
        AttestationSubmission.submitted_at, AttestationSubmission.id).limit(limit)).scalars()
    return [_row(session, s) for s in rows]


def awaiting_count(session: Session) -> int:
    return session.execute(select(func.count()).select_from(AttestationSubmission).where(
        AttestationSubmission.status == "submitted")).scalar_one()


def open_for_review(session: Session, actor: Actor, submission_id: int) -> Submitted:
    """A reviewer opens a submission: the employee is put in the flagged scope for the review (an alert of
    kind ``attestation_review`` naming the report; the employee page shows it as the reason), so a role
    that sees financial detail only where flagged can check the certified records against what is synced.
    Once per submission; the alert is resolved by the decision and flags the employee for the configured
    window after that, like any alert."""
    row = get(session, submission_id)
    sub = row.submission
    if sub.review_alert_id is None and sub.status == "submitted":
        alert = alerts.raise_alert(
            session, kind=REVIEW_ALERT, severity="info", employee_id=sub.employee_id, dedupe=False,
            title=f"Certification under review: {row.campaign.title} (submission #{sub.id})",
            detail={"reason": "a reviewer opened this employee's certification", "submission_id": sub.id,
                    "task_id": row.task.id, "campaign_id": row.campaign.id, "opened_by": actor.label[:200]})
        sub.review_alert_id = alert.id
        sub.review_opened_at = utcnow()
        session.flush()
    return row


def decide(session: Session, settings: Settings, actor: Actor, submission_id: int, *, approve: bool,
           comment: str | None) -> Submitted:
    """Approve, or return with a comment (required) for the employee to correct and resubmit."""
    row = open_for_review(session, actor, submission_id)
    sub = row.submission
    if sub.status != "submitted":
        raise Conflict(f"submission #{sub.id} is already {sub.status}")
    text = (comment or "").strip()
    if len(text) > MAX_COMMENT:
        raise Invalid(f"comment is at most {MAX_COMMENT} characters", field="comment")
    if not approve and not text:
        raise Invalid("say what to correct: a comment is required to return a submission", field="comment")
    now = utcnow()
    decision = "approved" if approve else "returned"
    session.add(AttestationReview(task_id=row.task.id, submission_id=sub.id, reviewer_id=actor.user_id,
                                  reviewer_label=actor.label[:200], decision=decision, comment=text, decided_at=now))
    sub.status = decision
    row.task.status = decision
    row.task.reviewed_at = now
    alert = session.get(Alert, sub.review_alert_id) if sub.review_alert_id else None
    if alert is not None and alert.status in alerts.ACTIVE:
        alerts.set_status(session, actor, alert.id, "resolved", f"review decided: {decision}",
                          flag_window_days=settings.alerts.flag_window_days)
    session.flush()
    return row


@dataclass(frozen=True)
class Late:
    task: AttestationTask
    campaign: AttestationCampaign
    employee: Employee
    days: int
    outstanding: bool  # still not filed (else: filed late)


def late_list(session: Session, *, on: dt.date | None = None, include_filed: bool = True) -> list[Late]:
    """What is late and by how many days: outstanding tasks past their due date (most overdue first), then
    reports filed after their due date. Closed tasks (a leaver's, someone no longer an access person) are
    not listed."""
    on = on or today()
    out: list[Late] = []
    stmt = (select(AttestationTask, AttestationCampaign, Employee)
            .join(AttestationCampaign, AttestationCampaign.id == AttestationTask.campaign_id)
            .join(Employee, Employee.id == AttestationTask.employee_id)
            .where(AttestationTask.status.in_(OUTSTANDING), AttestationTask.due < on)
            .order_by(AttestationTask.due, Employee.name))
    for task, campaign, employee in session.execute(stmt).all():
        days = days_late(task, on)
        if task.first_submitted_at is not None:  # returned after a late filing: still counts from today
            days = (on - task.due).days
        out.append(Late(task, campaign, employee, days or 0, True))
    if include_filed:
        filed = (select(AttestationTask, AttestationCampaign, Employee)
                 .join(AttestationCampaign, AttestationCampaign.id == AttestationTask.campaign_id)
                 .join(Employee, Employee.id == AttestationTask.employee_id)
                 .where(AttestationTask.status.in_(("submitted", "approved")),
                        AttestationTask.first_submitted_at.is_not(None))
                 .order_by(AttestationTask.due, Employee.name))
        for task, campaign, employee in session.execute(filed).all():
            days = days_late(task, on)
            if days:
                out.append(Late(task, campaign, employee, days, False))
    return out


def late_count(session: Session, on: dt.date | None = None) -> int:
    return session.execute(select(func.count()).select_from(AttestationTask).where(
        AttestationTask.status.in_(OUTSTANDING), AttestationTask.due < (on or today()))).scalar_one()


def notify_employee(session: Session, mailer: Mailer, settings: Settings, row: Submitted) -> None:
    """Tell the employee their report was returned (the comment is on the portal page, not in the e-mail)."""
    if row.submission.status != "returned" or row.employee.status != "active":
        return
    url = link(settings, f"/me/tasks/{row.task.id}")
    mailer.queue(session, to=[row.employee.email], purpose="attestation_returned",
                 subject="[Vigatra] Your compliance report was returned for correction",
                 text=(f"Compliance returned your report \"{row.campaign.title}\" with a comment. Read it, correct "
                       f"the report and certify it again in the employee portal: {url}\n\n"
                       "This message is sent by the Vigatra appliance and carries none of your data.\n"))
