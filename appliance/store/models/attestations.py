"""Attestations (SEC Rule 204A-1 and its peers): the code of ethics and its versions, campaigns, the task
each access person gets, what they submit (a frozen snapshot), and Compliance's review.

A task's stored ``status`` is ``open | submitted | approved | returned | closed``; ``late`` is derived
(open or returned past its due date, see services/attestations). A submission's ``snapshot`` is the JSON
of what the employee certified, frozen at submission (later syncs never change it; ``snapshot_sha256``
proves it). Declared accounts and manual entries are the employee's working rows while the task is open
or returned; the snapshot copies them. Nothing here is deleted: drafts removed by the employee keep a
``removed_at``, tasks of someone who left are ``closed`` with a ``closed_reason``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from appliance.store.base import Amount, Base, Id, UTCDateTime, utcnow


class CodeVersion(Base):
    """One version of the firm's code of ethics, as Compliance uploaded it (text or PDF), with its hash."""

    __tablename__ = "code_versions"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    title: Mapped[str] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(200), default="")
    # text/plain | application/pdf
    media_type: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    uploaded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    uploaded_label: Mapped[str] = mapped_column(String(200), default="")
    uploaded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<CodeVersion {self.version}>"


class AttestationCampaign(Base):
    """One round of reports: ``kind`` initial_holdings | quarterly_transactions | annual_holdings |
    code_acknowledgement. ``period`` '2026Q3', '2026' or '' (initial holdings, code acknowledgement);
    transactions cover ``period_start``..``period_end``, holdings are as of ``as_of``; ``due`` is the
    campaign's due date (initial holdings: each task has its own)."""

    __tablename__ = "attestation_campaigns"
    __table_args__ = (Index("ix_attestation_campaigns_kind", "kind", "period"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    period: Mapped[str] = mapped_column(String(8), default="")
    period_start: Mapped[dt.date | None] = mapped_column(Date, default=None)
    period_end: Mapped[dt.date | None] = mapped_column(Date, default=None)
    as_of: Mapped[dt.date | None] = mapped_column(Date, default=None)
    due: Mapped[dt.date | None] = mapped_column(Date, default=None)
    code_version_id: Mapped[int | None] = mapped_column(ForeignKey("code_versions.id", ondelete="RESTRICT"),
                                                        default=None)
    title: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    # Who created it ('automatic' for the standing initial-holdings campaign).
    created_label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<AttestationCampaign {self.id} {self.kind} {self.period}>"


class AttestationTask(Base):
    """What one access person owes for one campaign."""

    __tablename__ = "attestation_tasks"
    __table_args__ = (UniqueConstraint("campaign_id", "employee_id"),
                      Index("ix_attestation_tasks_employee", "employee_id", "status"),
                      Index("ix_attestation_tasks_status_due", "status", "due"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("attestation_campaigns.id", ondelete="RESTRICT"))
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="RESTRICT"))
    due: Mapped[dt.date] = mapped_column(Date)
    # Holdings tasks: the date the holdings are reported as of (initial: the access-person date).
    as_of: Mapped[dt.date | None] = mapped_column(Date, default=None)
    # open | submitted | approved | returned | closed ("late" is derived, never stored)
    status: Mapped[str] = mapped_column(String(16), default="open")
    # Why a task was closed without a report: offboarded | no_longer_access_person
    closed_reason: Mapped[str] = mapped_column(String(32), default="")
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The latest submission's time (days late are counted from the first one).
    first_submitted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    submitted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    # Reminders sent through the outbox: the one before the due date, and the last one after it.
    reminded_before_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    reminded_after_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)

    def __repr__(self) -> str:
        return f"<AttestationTask {self.id} {self.status}>"


class AttestationSubmission(Base):
    """One certification as submitted: the frozen ``snapshot`` (records, accounts, declared accounts,
    manual entries, values in the base currency) and the typed name. A returned task's resubmission is a
    new row (``number`` 2, 3, ...); earlier ones stay as they were."""

    __tablename__ = "attestation_submissions"
    __table_args__ = (UniqueConstraint("task_id", "number"),
                      Index("ix_attestation_submissions_employee", "employee_id"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("attestation_tasks.id", ondelete="RESTRICT"))
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="RESTRICT"))
    number: Mapped[int] = mapped_column(Integer)
    submitted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    nothing_to_report: Mapped[bool] = mapped_column(default=False)
    typed_name: Mapped[str] = mapped_column(String(200))
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    snapshot_sha256: Mapped[str] = mapped_column(String(64))
    # submitted | approved | returned
    status: Mapped[str] = mapped_column(String(16), default="submitted")
    # The alert that put the employee in the flagged scope when a reviewer opened it.
    review_alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="RESTRICT"),
                                                        default=None)
    review_opened_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)

    def __repr__(self) -> str:
        return f"<AttestationSubmission {self.id} task={self.task_id} #{self.number}>"


class AttestationDeclaredAccount(Base):
    """An account, wallet or prediction-market account the employee holds that is not connected."""

    __tablename__ = "attestation_declared_accounts"
    __table_args__ = (Index("ix_attestation_declared_accounts_task", "task_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("attestation_tasks.id", ondelete="RESTRICT"))
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="RESTRICT"))
    venue: Mapped[str] = mapped_column(String(100))
    account: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    removed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)


class AttestationManualEntry(Base):
    """A record the appliance cannot see, added by the employee (always shown as manual). ``kind``
    holding | transaction; ``nature`` buy | sell | other_acquisition | other_disposition (transactions)."""

    __tablename__ = "attestation_manual_entries"
    __table_args__ = (Index("ix_attestation_manual_entries_task", "task_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("attestation_tasks.id", ondelete="RESTRICT"))
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(16))
    asset: Mapped[str] = mapped_column(String(64))
    # Chain/contract, or the prediction market's id.
    identifier: Mapped[str] = mapped_column(String(200), default="")
    quantity: Mapped[Decimal] = mapped_column(Amount)
    price: Mapped[Decimal | None] = mapped_column(Amount, default=None)
    principal: Mapped[Decimal | None] = mapped_column(Amount, default=None)
    currency: Mapped[str] = mapped_column(String(16), default="")
    venue: Mapped[str] = mapped_column(String(100), default="")
    occurred_on: Mapped[dt.date | None] = mapped_column(Date, default=None)
    nature: Mapped[str] = mapped_column(String(24), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    removed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)


class CodeAcknowledgement(Base):
    """An access person's acknowledgement of one code version (typed name)."""

    __tablename__ = "code_acknowledgements"
    __table_args__ = (UniqueConstraint("code_version_id", "employee_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    code_version_id: Mapped[int] = mapped_column(ForeignKey("code_versions.id", ondelete="RESTRICT"))
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="RESTRICT"))
    task_id: Mapped[int | None] = mapped_column(ForeignKey("attestation_tasks.id", ondelete="RESTRICT"),
                                                default=None)
    typed_name: Mapped[str] = mapped_column(String(200))
    acknowledged_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AttestationReview(Base):
    """Compliance's decision on one submission: approved, or returned with a comment (required)."""

    __tablename__ = "attestation_reviews"
    __table_args__ = (Index("ix_attestation_reviews_task", "task_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("attestation_tasks.id", ondelete="RESTRICT"))
    submission_id: Mapped[int] = mapped_column(ForeignKey("attestation_submissions.id", ondelete="RESTRICT"))
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    reviewer_label: Mapped[str] = mapped_column(String(200), default="")
    # approved | returned
    decision: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text, default="")
    decided_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AttestationDifference(Base):
    """A record synced after a certification that falls in its period (a difference found later), once per
    submission and record; ``alert_id`` is the alert it raised."""

    __tablename__ = "attestation_differences"
    __table_args__ = (UniqueConstraint("submission_id", "record_type", "record_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("attestation_submissions.id", ondelete="RESTRICT"))
    # transaction | position
    record_type: Mapped[str] = mapped_column(String(16))
    record_id: Mapped[int] = mapped_column(Id)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="RESTRICT"), default=None)
    found_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
