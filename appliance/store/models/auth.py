"""Shared revocation state: what every process must learn within a second."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.store.base import Base, UTCDateTime, utcnow


class AuthRevision(Base):
    """A single counter bumped in the same transaction as any change that affects authentication
    (user disabled, password changed, role changed, API key issued/rotated/revoked, logout).
    Every process polls it once a second (and listens for NOTIFY on PostgreSQL) and reloads its
    in-memory auth state when it moves."""

    __tablename__ = "auth_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)


class RevokedSession(Base):
    """Browser sessions ended by logout before their natural expiry."""

    __tablename__ = "revoked_sessions"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoginThrottle(Base):
    """Failed-login counters per account name (existing or not) and per IP, shared by processes."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    lockouts: Mapped[int] = mapped_column(Integer, default=0)



