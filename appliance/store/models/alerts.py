"""Alerts: every rule break, broken connection or integrity failure; nothing disappears."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.store.base import Base, Id, UTCDateTime, utcnow


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_employee_status", "employee_id", "status"),
        # Open alerts by severity and age (the overview), employees with open alerts (the employees list).
        Index("ix_alerts_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id", ondelete="RESTRICT"), default=None)
    connection_id: Mapped[int | None] = mapped_column(ForeignKey("connections.id", ondelete="RESTRICT"), default=None)
    # connection_broken | scope_escalation | integrity_failure | sync_gap | rule_break | ...
    kind: Mapped[str] = mapped_column(String(64))
    # info | warning | critical
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    # open | assigned | resolved | dismissed
    status: Mapped[str] = mapped_column(String(16), default="open")
    title: Mapped[str] = mapped_column(String(300))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    assigned_to: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    resolution: Mapped[str] = mapped_column(Text, default="")
