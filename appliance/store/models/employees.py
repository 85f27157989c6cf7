"""Monitored employees and their one-time onboarding links."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from appliance.store.base import Base, Id, UTCDateTime, utcnow


class Employee(Base):
    __tablename__ = "employees"
    # The employees list's orders (services/employee_list.py: then id), so a page is read in index order instead
    # of sorting every employee; lower(name) and lower(department) below.
    __table_args__ = (
        Index("ix_employees_name", "name", "id"),
        Index("ix_employees_status", "status", "id"),
        Index("ix_employees_created", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(100), unique=True, default=None)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    department: Mapped[str] = mapped_column(String(200), default="")
    # active | offboarded
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    offboarded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    # The manager's e-mail address (the roster's manager; matched to an employee when one has it).
    manager_email: Mapped[str] = mapped_column(String(254), default="")
    # An access person under the firm's code of ethics (SEC 204A-1), since that day.
    access_person: Mapped[bool] = mapped_column(Boolean, default=False)
    access_person_since: Mapped[dt.date | None] = mapped_column(Date, default=None)
    # The roster source that last listed this employee (ldap | files); None: added by hand. A source
    # offboards only the employees it lists, when they disappear from it.
    roster_source: Mapped[str | None] = mapped_column(String(16), default=None)
    roster_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)

    def __repr__(self) -> str:
        # Identity stays out of logs: id only.
        return f"<Employee {self.id}>"


# The employees list sorts names and departments in any case (lower()), then by id.
Index("ix_employees_lower_name", func.lower(Employee.name), Employee.id)
Index("ix_employees_lower_department", func.lower(Employee.department), Employee.id)


class RosterState(Base):
    """Per roster source (ldap | files): whether its changes were ever applied, and the last dry run shown.

    Until a source's first apply, its changes are only shown (the CLI's --dry-run, the Roster page); the
    first apply must follow a dry run showing the same changes (``reviewed_digest``)."""

    __tablename__ = "roster_state"

    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    first_applied_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    reviewed_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    last_run_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    last_summary: Mapped[str] = mapped_column(String(500), default="")
    # The changes of the last run that were not applied (awaiting the first apply, or held back), for the UI.
    pending: Mapped[list[Any] | None] = mapped_column(JSON, default=None)


class OnboardingToken(Base):
    """A one-time onboarding link. Only the SHA-256 of the token is stored."""

    __tablename__ = "onboarding_tokens"
    __table_args__ = (Index("ix_onboarding_tokens_employee", "employee_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="RESTRICT"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # initial | reonboard
    purpose: Mapped[str] = mapped_column(String(16), default="initial")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    # The first browser to submit on the link claims it (hash of a random cookie); others are refused.
    claim_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    # When the poller recorded that the link expired unused (each expiry is audited once).
    expiry_audited_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)

    def __repr__(self) -> str:
        return f"<OnboardingToken {self.id} employee={self.employee_id}>"
