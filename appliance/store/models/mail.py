"""The mail outbox: e-mails written in the transaction that decided to send them, delivered after it
committed (a rolled-back change sends nothing), retried until the relay takes them.

The body is sealed like any other secret (it may carry a one-time onboarding link) and dropped once
the relay accepted it; recipients, subject and outcome stay as the record of what was sent.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.store.base import Base, Id, UTCDateTime, utcnow


class MailOutbox(Base):
    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # alert | assignment | onboarding | test | ...
    purpose: Mapped[str] = mapped_column(String(32))
    recipients: Mapped[list[str]] = mapped_column(JSON)
    subject: Mapped[str] = mapped_column(String(300))
    body_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    # pending | sent | failed
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The node delivering it, until when (a conditional UPDATE claims it; a dead node's claim expires).
    claimed_by: Mapped[str | None] = mapped_column(String(100), default=None)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str] = mapped_column(String(300), default="")

    def __repr__(self) -> str:
        return f"<MailOutbox {self.id} {self.purpose} {self.status}>"
