"""Appliance-wide settings changed at run time from the dashboard (not the YAML file)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.store.base import Base, UTCDateTime, utcnow


class Setting(Base):
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    updated_by: Mapped[int | None] = mapped_column(BigInteger, default=None)


class PollCycle(Base):
    """One polling cycle of one node: what `vigatra status` and the System page show."""

    __tablename__ = "poll_cycles"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    node: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    duration_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    polled: Mapped[int] = mapped_column(Integer, default=0)
    succeeded: Mapped[int] = mapped_column(Integer, default=0)
    # {"authentication": {"kraken": 1}, "transient": {...}}: failures by class and venue.
    failures: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    backlog: Mapped[int] = mapped_column(Integer, default=0)


class StoreProbe(Base):
    """One row every node rewrites to prove the store takes writes (``/healthz``): a load balancer takes
    a node whose database cannot be written (disk full, read-only, failed over) out of service."""

    __tablename__ = "store_probes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    node: Mapped[str] = mapped_column(String(100))
    probed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
