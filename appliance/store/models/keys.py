"""Data-encryption keys (DEKs), stored only wrapped by the customer-held key-encryption key."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.store.base import Base, UTCDateTime, utcnow


class KeyVersion(Base):
    __tablename__ = "key_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # The DEK wrapped by the KEK; never the DEK itself.
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    # Which provider and which KEK wrapped it (e.g. file:sha256-fingerprint); never key bytes.
    kek_id: Mapped[str] = mapped_column(String(200))
    # active | retiring | retired
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
