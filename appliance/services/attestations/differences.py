"""Differences found later: records synced after a certification that fall in its period.

After each sync (services/sync/cycles.py) the employee's certified submissions are compared with what is
now stored: a quarterly report against the transactions of its quarter (any not in the frozen snapshot), a
holdings report against transactions dated up to its ``as_of`` day that were stored after it was
submitted. Each such record is recorded once per submission; each check that finds some raises one alert
(``attestation_difference``) naming the report. The snapshot itself never changes.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.services import alerts
from appliance.services.attestations.snapshot import day_end, period_transaction_ids
from appliance.store.models import (
    AttestationCampaign,
    AttestationDifference,
    AttestationSubmission,
    AttestationTask,
    Connection,
    Transaction,
)

DIFFERENCE_ALERT = "attestation_difference"
IN_FORCE = ("submitted", "approved")


def _in_force(session: Session, employee_id: int) -> list[tuple[AttestationSubmission, AttestationCampaign,
                                                                   AttestationTask]]:
    """The latest submission of each task of the employee that stands (submitted or approved)."""
    rows = session.execute(select(AttestationSubmission, AttestationCampaign, AttestationTask).join(
        AttestationTask, AttestationTask.id == AttestationSubmission.task_id).join(
        AttestationCampaign, AttestationCampaign.id == AttestationTask.campaign_id).where(
        AttestationSubmission.employee_id == employee_id, AttestationSubmission.status.in_(IN_FORCE),
        AttestationCampaign.kind != "code_acknowledgement").order_by(AttestationSubmission.number)).all()
    latest: dict[int, tuple[AttestationSubmission, AttestationCampaign, AttestationTask]] = {}
    for sub, campaign, task in rows:
        latest[task.id] = (sub, campaign, task)
    return list(latest.values())


def _new_records(session: Session, sub: AttestationSubmission, campaign: AttestationCampaign,
                 task: AttestationTask) -> list[int]:
    if campaign.kind == "quarterly_transactions":
        assert campaign.period_start is not None and campaign.period_end is not None
        frozen = {r.get("record") for r in sub.snapshot.get("records", [])}
        return [i for i in period_transaction_ids(session, sub.employee_id, campaign.period_start,
                                                  campaign.period_end) if f"tx:{i}" not in frozen]
    as_of = task.as_of or campaign.as_of
    if as_of is None:
        return []
    return list(session.execute(select(Transaction.id).join(Connection, Connection.id == Transaction.connection_id)
                                .where(Connection.employee_id == sub.employee_id, Transaction.orphaned.is_(False),
                                       Transaction.occurred_at < day_end(as_of),
                                       Transaction.created_at > sub.submitted_at)
                                .order_by(Transaction.id)).scalars())


def check_employee(session: Session, employee_id: int, *, now: dt.datetime | None = None) -> list[int]:
    """Record the differences of the employee's standing certifications; returns the alerts raised."""
    raised: list[int] = []
    for sub, campaign, task in _in_force(session, employee_id):
        found = _new_records(session, sub, campaign, task)
        if not found:
            continue
        known = set(session.execute(select(AttestationDifference.record_id).where(
            AttestationDifference.submission_id == sub.id,
            AttestationDifference.record_type == "transaction")).scalars())
        fresh = [record_id for record_id in found if record_id not in known]
        if not fresh:
            continue
        alert = alerts.raise_alert(
            session, kind=DIFFERENCE_ALERT, severity="warning", employee_id=employee_id, dedupe=False,
            title=f"Records found after certification: {campaign.title} ({len(fresh)} transaction(s))",
            detail={"submission_id": sub.id, "task_id": task.id, "campaign_id": campaign.id,
                    "records": [f"tx:{i}" for i in fresh[:200]], "count": len(fresh)})
        for record_id in fresh:
            session.add(AttestationDifference(submission_id=sub.id, record_type="transaction", record_id=record_id,
                                              alert_id=alert.id, found_at=now or alert.created_at))
        session.flush()
        raised.append(alert.id)
    return raised
