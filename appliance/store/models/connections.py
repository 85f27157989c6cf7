"""Connections (exchange keys, wallets, prediction-market accounts), sync cursors and coverage."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.store.base import Base, Id, UTCDateTime, utcnow


class Connection(Base):
    """One source of data for one employee.

    ``kind`` is exchange | wallet | prediction. Credentials live only in the ``*_sealed`` columns,
    sealed with AES-256-GCM bound to this table, row and column; ``key_fingerprint`` is an HMAC
    fingerprint for display and de-duplication, never the key itself.
    """

    __tablename__ = "connections"
    __table_args__ = (
        Index("ix_connections_employee", "employee_id"),
        Index("ix_connections_due", "status", "next_poll_at"),
        # The overview's "last successful cycle": max() read from the index, not from 50,000 rows.
        Index("ix_connections_last_success", "last_success_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(16))
    venue: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(200), default="")
    # pending | active | degraded | rejected | broken | reonboarding_required | offboarded
    status: Mapped[str] = mapped_column(String(32), default="pending")
    status_reason: Mapped[str] = mapped_column(String(500), default="")
    # Wallets and prediction accounts: the public address; exchanges: empty.
    address: Mapped[str] = mapped_column(String(200), default="")
    key_fingerprint: Mapped[str] = mapped_column(String(64), default="")
    api_key_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    api_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    passphrase_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    # Scope probe: verified true when the venue answered and the key was read-only.
    scope_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    scope: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    scope_checked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    poll_interval_seconds: Mapped[int | None] = mapped_column(Integer, default=None)
    next_poll_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    last_success_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    # Rate limits in a row since the last success: they grow the backoff but never count toward broken
    # (a venue that throttles us works as designed).
    consecutive_rate_limits: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error_class: Mapped[str | None] = mapped_column(String(32), default=None)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
    # Multi-node polling: the node holding the row and until when.
    lease_owner: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    onboarding_token_id: Mapped[int | None] = mapped_column(
        ForeignKey("onboarding_tokens.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.kind}:{self.venue} {self.status}>"


class SyncCursor(Base):
    """Where the next incremental fetch of one stream starts. Advanced with the rows it covers."""

    __tablename__ = "sync_cursors"

    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="RESTRICT"), primary_key=True)
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    cursor: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # How far a long walk (a first sync over history windows) has got: {"done": n, "total": m, "at": iso}.
    # None once the stream is caught up. Shown on the employee page.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CoverageInterval(Base):
    """A time range of one stream known complete (``complete``) or known missing (``gap``, with why)."""

    __tablename__ = "coverage_intervals"
    __table_args__ = (
        Index("ix_coverage_connection_stream", "connection_id", "stream", "start_at"),
        # Open gaps firm-wide (the overview's coverage health).
        Index("ix_coverage_open", "kind", "closed_at", "connection_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="RESTRICT"))
    stream: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    start_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    # auth_error | venue_down | rate_limited | unverified_markets | history_limit | bad_data | ...
    reason: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
