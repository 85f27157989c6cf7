"""Users, roles, permissions and API keys."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from appliance.store.base import Base, Id, UTCDateTime, utcnow


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    # argon2id/scrypt encoded hash: algorithm and parameters travel with it.
    password_hash: Mapped[str] = mapped_column(String(512))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped on disable, password change and role loss; tokens carry it and die when it moves.
    token_epoch: Mapped[int] = mapped_column(Integer, default=0)
    totp_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    mfa_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Last accepted TOTP time step: a code is accepted once (no replay within its window).
    totp_last_step: Mapped[int] = mapped_column(Integer, default=0)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    password_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    roles: Mapped[list[Role]] = relationship(secondary="user_roles", lazy="selectin")

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username!r}>"


class Role(Base):
    __tablename__ = "roles"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(500), default="")
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    permissions: Mapped[list[RolePermission]] = relationship(
        back_populates="role", cascade="all, delete-orphan", lazy="selectin")

    def __repr__(self) -> str:
        return f"<Role {self.id} {self.name!r}>"


class RolePermission(Base):
    """One granted permission, written ``resource:action[:scope]``."""

    __tablename__ = "role_permissions"

    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True)
    permission: Mapped[str] = mapped_column(String(64), primary_key=True)

    role: Mapped[Role] = relationship(back_populates="permissions")


class UserRole(Base):
    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="RESTRICT"), primary_key=True)


class ApiKey(Base):
    """An integration key: ``<prefix>.<secret>``; only a hash of the secret is kept.

    Rotation keeps the id and prefix and replaces the secret; the previous secret stays valid until
    ``previous_valid_until`` so a client swaps one header value and nothing else.
    """

    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(128))
    previous_secret_hash: Mapped[str | None] = mapped_column(String(128), default=None)
    previous_valid_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="RESTRICT"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    rotated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    # The owner's token epoch when this secret was issued: a password change, a role removed or a
    # disable moves the owner's epoch and the key stops answering until it is rotated.
    owner_epoch: Mapped[int] = mapped_column(Integer, default=0)

    def __repr__(self) -> str:
        return f"<ApiKey {self.id} {self.name!r} prefix={self.prefix}>"
