"""The audit trail: hash-chained events and signed checkpoints. Insert-only."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.store.base import Base, Id, UTCDateTime


class AuditEvent(Base):
    """One audited action. ``hash`` = SHA-256(prev_hash || canonical form of every other column)."""

    __tablename__ = "audit_events"

    # Assigned by the writer (head.last_id + 1) under the head lock: gap-free, so a deleted row shows.
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=False)
    timestamp: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    # user | apikey | system | anonymous | employee
    actor_type: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(BigInteger, default=None, index=True)
    api_key_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    action: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(64), default="")
    resource_id: Mapped[str] = mapped_column(String(100), default="")
    ip_address: Mapped[str] = mapped_column(String(64), default="")
    request_id: Mapped[str] = mapped_column(String(64), default="")
    method: Mapped[str] = mapped_column(String(10), default="")
    path: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[int | None] = mapped_column(Integer, default=None)
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    # success | failure | denied
    outcome: Mapped[str] = mapped_column(String(16), default="success")
    detail: Mapped[str] = mapped_column(Text, default="")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed statement "the chain had N events ending in hash H at time T" (Ed25519)."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # periodic | export | purge | rekey | backup | restore
    kind: Mapped[str] = mapped_column(String(16))
    last_event_id: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))
    event_count: Mapped[int] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(Text, default="")
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary)


class AuditChainHead(Base):
    """The single row every audit writer locks: the id and hash of the newest event.

    Writers serialise on it (SQLite: BEGIN IMMEDIATE; PostgreSQL: SELECT ... FOR UPDATE), which is
    what keeps ids gap-free and the chain linear across threads and processes.
    """

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))
    # Events removed by `vigatra audit purge` (their signed record is an audit_checkpoints row).
    purged_through_id: Mapped[int] = mapped_column(BigInteger, default=0)
