"""Conduct rules: employee groups, restricted and watch lists, rules, and the history of every change.

Lists and rules are versioned: every change bumps ``version`` and writes one ``conduct_changes`` row
(who, when, what changed, before and after), so any earlier version can be rebuilt. List entries are
never deleted: removing one stamps ``removed_at``/``removed_by`` and it stops matching from then on
(alerts it already raised stay).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from appliance.store.base import Base, Id, UTCDateTime, utcnow


class EmployeeGroup(Base):
    """A named group of employees managed in the app (besides the HR department field)."""

    __tablename__ = "employee_groups"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(String(500), default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)


class EmployeeGroupMember(Base):
    __tablename__ = "employee_group_members"
    __table_args__ = (Index("ix_employee_group_members_employee", "employee_id"),)

    group_id: Mapped[int] = mapped_column(ForeignKey("employee_groups.id", ondelete="CASCADE"), primary_key=True)
    employee_id: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="RESTRICT"), primary_key=True)
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    added_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)


class ConductList(Base):
    """A restricted or watch list. ``applies_to``: ``{"departments": [...], "groups": [ids]}``; both empty
    (or the whole value empty) means every employee."""

    __tablename__ = "conduct_lists"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # restricted | watch
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    applies_to: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)

    def __repr__(self) -> str:
        return f"<ConductList {self.id} {self.kind}>"


class ListEntry(Base):
    """One entry of a list. ``value`` as entered; ``match_key`` normalised for matching (symbols upper
    case, ``chain:contract`` and venues lower case, phrases and categories lower case with single
    spaces). ``note`` is confidential (a deal code, the issuer): shown to list readers only, never
    copied into alerts or e-mails."""

    __tablename__ = "list_entries"
    __table_args__ = (Index("ix_list_entries_list", "list_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("conduct_lists.id", ondelete="RESTRICT"))
    # asset | venue | market_text | market_category | market_id
    type: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(500))
    match_key: Mapped[str] = mapped_column(String(500))
    effective_from: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    effective_to: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    note: Mapped[str] = mapped_column(Text, default="")
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    added_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    removed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    removed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)

    def __repr__(self) -> str:
        return f"<ListEntry {self.id} list={self.list_id} {self.type}>"


class Rule(Base):
    """A configured conduct rule. ``params`` depend on ``kind`` (services/rules/catalogue.py validates
    them); ``applies_to`` has the shape of a list's."""

    __tablename__ = "rules"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # restricted | watch | holding_period | blackout | threshold | new_account | preclearance_required
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    applies_to: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The list a restricted or watch rule (or a blackout over a list) reads; also in params.
    list_id: Mapped[int | None] = mapped_column(ForeignKey("conduct_lists.id", ondelete="RESTRICT"), default=None)
    # info | warning | critical
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    # When the whole history was last evaluated against this rule (its version then).
    evaluated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    evaluated_version: Mapped[int | None] = mapped_column(Integer, default=None)

    def __repr__(self) -> str:
        return f"<Rule {self.id} {self.kind}>"


class ConductChange(Base):
    """One change to a list, a rule or a group: who, when, what (``detail`` holds before/after)."""

    __tablename__ = "conduct_changes"
    __table_args__ = (Index("ix_conduct_changes_subject", "subject", "subject_id", "version"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # list | rule | group
    subject: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[int] = mapped_column(Id)
    version: Mapped[int] = mapped_column(Integer)
    # created | updated | entry_added | entry_changed | entry_removed | member_added | member_removed | ...
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    changed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    # The actor's label at the time (a user name, ``cli:root``, ``apikey:siem``): survives the user's removal.
    actor_label: Mapped[str] = mapped_column(String(200), default="")
    changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class EvaluationMark(Base):
    """How far the incremental evaluation has read one connection's records (the highest id of each
    kind already evaluated). Advanced in the transaction that stores the alerts, so a crash re-reads,
    never skips; the alerts' unique (rule, record) key keeps a re-read from duplicating."""

    __tablename__ = "evaluation_marks"

    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="RESTRICT"), primary_key=True)
    transaction_id: Mapped[int] = mapped_column(Id, default=0)
    position_id: Mapped[int] = mapped_column(Id, default=0)
    balance_id: Mapped[int] = mapped_column(Id, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class UnvaluedRecord(Base):
    """A record a threshold rule could not value (no price at its time): never passed or failed
    silently. ``valued_at`` is set when a later evaluation could value it."""

    __tablename__ = "unvalued_records"
    __table_args__ = (UniqueConstraint("rule_id", "record_key"), Index("ix_unvalued_records_open", "rule_id",
                                                                          "valued_at"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("rules.id", ondelete="RESTRICT"))
    record_key: Mapped[str] = mapped_column(String(100))
    employee_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id", ondelete="RESTRICT"), default=None)
    reason: Mapped[str] = mapped_column(String(300))
    first_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    checked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    valued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
