"""The employee portal and pre-clearance: sign-in links, employee sessions, requests and how each trade
matched them.

Employee sessions are their own kind, not dashboard users: a row here never carries a permission. Tokens
(links and session cookies) are stored only as their SHA-256.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from appliance.store.base import Amount, Base, Id, UTCDateTime, utcnow


class EmployeeSignInLink(Base):
    """A one-time link to the portal: 15 minutes, one use, bound to the browser that requested or first
    opened it (the hash of a random cookie)."""

    __tablename__ = "employee_sign_in_links"
    __table_args__ = (Index("ix_employee_sign_in_links_employee", "employee_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="RESTRICT"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    binding_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    # requested (by the employee, from the sign-in page) | printed (vigatra employee portal-link) | mailed
    channel: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)

    def __repr__(self) -> str:
        return f"<EmployeeSignInLink {self.id} employee={self.employee_id}>"


class EmployeeSession(Base):
    """A signed-in employee's browser session (server side: ending it here ends it at once)."""

    __tablename__ = "employee_sessions"
    __table_args__ = (Index("ix_employee_sessions_employee", "employee_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="RESTRICT"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    link_id: Mapped[int | None] = mapped_column(ForeignKey("employee_sign_in_links.id", ondelete="SET NULL"),
                                                default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    # signed_out | idle | offboarded
    ended_reason: Mapped[str] = mapped_column(String(32), default="")

    def __repr__(self) -> str:
        return f"<EmployeeSession {self.id} employee={self.employee_id}>"


class PreclearanceRequest(Base):
    """An employee's request to trade, and its decision. ``asset`` (an asset symbol) or ``market_id`` (a
    prediction market at ``venue``); ``quantity`` in units of the asset or contracts, or ``notional`` in the
    base currency. Valid from ``valid_from`` to ``expires_at`` for the quantity plus ``tolerance_percent``."""

    __tablename__ = "preclearance_requests"
    __table_args__ = (Index("ix_preclearance_requests_employee", "employee_id", "status"),
                      Index("ix_preclearance_requests_status", "status", "created_at"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="RESTRICT"))
    # asset | market
    kind: Mapped[str] = mapped_column(String(16))
    asset: Mapped[str] = mapped_column(String(64), default="")
    market_id: Mapped[str] = mapped_column(String(200), default="")
    venue: Mapped[str] = mapped_column(String(32), default="")
    # buy | sell (assets); yes | no (markets)
    side: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[Decimal | None] = mapped_column(Amount, default=None)
    notional: Mapped[Decimal | None] = mapped_column(Amount, default=None)
    currency: Mapped[str] = mapped_column(String(16), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    # portal | dashboard
    submitted_via: Mapped[str] = mapped_column(String(16))
    submitted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # pending | approved | denied
    status: Mapped[str] = mapped_column(String(16))
    # auto | reviewer
    decided_how: Mapped[str] = mapped_column(String(16), default="")
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    decided_label: Mapped[str] = mapped_column(String(200), default="")
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    # What the employee is told: the rule that denied it, the automatic approval, the reviewer's comment.
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("rules.id", ondelete="RESTRICT"), default=None)
    valid_from: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    tolerance_percent: Mapped[Decimal] = mapped_column(Amount, default=Decimal(10))

    def __repr__(self) -> str:
        return f"<PreclearanceRequest {self.id} {self.status}>"


class PreclearanceMatch(Base):
    """How one synced trade or new prediction position matched the employee's approvals (once per record)."""

    __tablename__ = "preclearance_matches"
    __table_args__ = (UniqueConstraint("record_type", "record_id"),
                      Index("ix_preclearance_matches_connection", "connection_id", "record_type", "record_id"),
                      Index("ix_preclearance_matches_request", "request_id"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # transaction | position
    record_type: Mapped[str] = mapped_column(String(16))
    record_id: Mapped[int] = mapped_column(Id)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="RESTRICT"))
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="RESTRICT"))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # The quantity this record counts against an approval (a position: the size it added).
    quantity: Mapped[Decimal] = mapped_column(Amount)
    # matched | over_quantity | outside_window | no_request | unvalued (a notional approval, no value at its time)
    status: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[int | None] = mapped_column(ForeignKey("preclearance_requests.id", ondelete="RESTRICT"),
                                                   default=None)
    matched_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
