"""Alerts and the cases built on them: every rule break, broken connection or integrity failure;
nothing disappears. Notes, history and evidence are append-only (no path of the application updates
or deletes them)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from appliance.store.base import Base, Id, UTCDateTime, utcnow


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_employee_status", "employee_id", "status"),
        # One alert per (rule, record): re-evaluation never duplicates. Alerts not raised by a rule have
        # no rule id, and NULLs never collide.
        UniqueConstraint("rule_id", "record_key"),
        # Open alerts by severity and age (the overview), employees with open alerts (the employees list).
        Index("ix_alerts_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id", ondelete="RESTRICT"), default=None)
    connection_id: Mapped[int | None] = mapped_column(ForeignKey("connections.id", ondelete="RESTRICT"), default=None)
    # connection_broken | scope_escalation | integrity_failure | inconsistent_data | rule_breach | watch | manual
    kind: Mapped[str] = mapped_column(String(64))
    # info | warning | critical
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    # open | investigating | resolved | dismissed
    status: Mapped[str] = mapped_column(String(16), default="open")
    title: Mapped[str] = mapped_column(String(300))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    assigned_to: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    resolution: Mapped[str] = mapped_column(Text, default="")
    # A closed alert keeps its employee flagged (visible to roles limited to flagged records) until then:
    # the close time plus alerts.flag_window_days as configured when it closed. Open alerts flag anyway.
    flagged_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    # Raised by a rule: which rule (and its version then), the list entry it matched, the record's key
    # (``tx:<id>``, ``pos:<id>``, ``bal:<id>``, ``holding:<employee>:<asset>``) and the record's time.
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("rules.id", ondelete="RESTRICT"), default=None)
    rule_version: Mapped[int | None] = mapped_column(Integer, default=None)
    list_entry_id: Mapped[int | None] = mapped_column(ForeignKey("list_entries.id", ondelete="RESTRICT"),
                                                      default=None)
    record_key: Mapped[str | None] = mapped_column(String(100), default=None)
    occurred_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    # Raised by hand: who, and why.
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    reason: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<Alert {self.id} {self.kind} {self.status}>"


class AlertNote(Base):
    __tablename__ = "alert_notes"
    __table_args__ = (Index("ix_alert_notes_alert", "alert_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="RESTRICT"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    author_label: Mapped[str] = mapped_column(String(200), default="")
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlertEvent(Base):
    """The case's timeline: created, assigned, status changed, note added, evidence added, reopened."""

    __tablename__ = "alert_events"
    __table_args__ = (Index("ix_alert_events_alert", "alert_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="RESTRICT"))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    actor_label: Mapped[str] = mapped_column(String(200), default="")
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AlertEvidence(Base):
    """A link added to a case: a transaction, position, balance or alert by id, or a reference outside
    the appliance (a ticket, a document number)."""

    __tablename__ = "alert_evidence"
    __table_args__ = (Index("ix_alert_evidence_alert", "alert_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="RESTRICT"))
    # transaction | position | balance | alert | reference
    type: Mapped[str] = mapped_column(String(16))
    ref_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    reference: Mapped[str] = mapped_column(String(500), default="")
    note: Mapped[str] = mapped_column(String(500), default="")
    added_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    added_label: Mapped[str] = mapped_column(String(200), default="")
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
