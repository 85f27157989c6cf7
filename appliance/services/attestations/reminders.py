"""Reminder e-mails for outstanding tasks, through the outbox (services/mailer.py): one some days before the
due date, then one the day after it and again every few days while the task stays late.

Like every e-mail of the appliance (services/notifications.py) a reminder carries no figure, no asset and
no name: what kind of report is due, when, and a link to the portal page of the task (sign-in required).
The reminders sent in one run are one audit event (system actor, the tasks' ids), in the transaction that
records them as sent.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.audit.writer import AuditRecord, append
from appliance.services.attestations.campaigns import OUTSTANDING, today
from appliance.services.attestations.periods import LABELS
from appliance.services.mailer import Mailer
from appliance.services.notifications import link
from appliance.settings import Settings
from appliance.store.base import utcnow
from appliance.store.models import AttestationCampaign, AttestationTask, Employee


@dataclass
class Sent:
    before: list[int] = field(default_factory=list)
    after: list[int] = field(default_factory=list)


def _text(settings: Settings, task: AttestationTask, kind: str, late: bool) -> tuple[str, str]:
    what = LABELS.get(kind, "compliance report")
    due = task.due.isoformat()
    url = link(settings, f"/me/tasks/{task.id}")
    if late:
        subject = f"[Vigatra] Overdue: your {what.lower()} was due on {due}"
        intro = f"Your {what.lower()} was due on {due} and has not been certified yet."
    else:
        subject = f"[Vigatra] Reminder: your {what.lower()} is due on {due}"
        intro = f"Your {what.lower()} is due on {due}."
    body = (f"{intro}\n\nOpen it in the employee portal (sign in with your work e-mail address): {url}\n\n"
            "This message is sent by the Vigatra appliance and carries none of your data.\n")
    return subject, body


def send_due(session: Session, mailer: Mailer, settings: Settings, *, on: dt.date | None = None) -> Sent:
    """Queue the reminders due ``on`` (default today). Idempotent within a day: each task records when it was
    last reminded."""
    sent = Sent()
    if not mailer.enabled:
        return sent
    cfg = settings.attestations
    on = on or today()
    now = utcnow()
    rows = session.execute(select(AttestationTask, AttestationCampaign.kind, Employee.email).join(
        AttestationCampaign, AttestationCampaign.id == AttestationTask.campaign_id).join(
        Employee, Employee.id == AttestationTask.employee_id).where(
        AttestationTask.status.in_(OUTSTANDING), Employee.status == "active").order_by(AttestationTask.id)).all()
    for task, kind, email in rows:
        if on > task.due:
            if not cfg.remind_after_days:
                continue
            last = task.reminded_after_at.date() if task.reminded_after_at else None
            if last is not None and (on - last).days < cfg.remind_after_days:
                continue
            subject, body = _text(settings, task, kind, late=True)
            mailer.queue(session, to=[email], subject=subject, text=body, purpose="attestation_late")
            task.reminded_after_at = now
            sent.after.append(task.id)
        elif cfg.remind_before_days and task.reminded_before_at is None and \
                (task.due - on).days <= cfg.remind_before_days:
            subject, body = _text(settings, task, kind, late=False)
            mailer.queue(session, to=[email], subject=subject, text=body, purpose="attestation_due")
            task.reminded_before_at = now
            sent.before.append(task.id)
    if sent.before or sent.after:
        append(session, [AuditRecord(
            action="attestations.reminders_sent", actor_type="system", resource_type="attestations",
            resource_id="*", detail=json.dumps({"tasks_due_soon": sent.before, "tasks_late": sent.after}))])
    session.flush()
    return sent
