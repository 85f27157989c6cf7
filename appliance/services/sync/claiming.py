"""Claiming: which connections are due, and the leases that keep one node polling each.

Each node leases due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; a conditional update under
SQLite's single writer). A lease expires after ``poller.lease_seconds``, so a dead node's connections
are taken over; it is renewed with every commit of a sync (at least every third of the lease), and a
sync whose lease another node took stops before calling the venue or writing. A node gives back its
own leftover leases at the start of each cycle, and a connection whose key was wiped is never claimed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from appliance.services.context import Appliance
from appliance.store.base import utcnow
from appliance.store.models import Connection

POLLED = ("pending", "active", "degraded", "broken", "reonboarding_required")
RED = ("broken", "reonboarding_required")


def unit_of_work(app: Appliance) -> contextlib.AbstractContextManager[Session]:
    """A unit of work of the poller: its threads write at once, so they queue (Store.queued_unit_of_work)."""
    return app.store.queued_unit_of_work()


def _pollable() -> tuple[Any, ...]:
    """Connections the poller may call a venue for: a polled status, and something to call it with (an
    address, or sealed credentials: a key wiped after a scope escalation is never used again)."""
    return (Connection.status.in_(POLLED), or_(Connection.address != "", Connection.api_key_sealed.is_not(None)))


def claim_due(app: Appliance, *, limit: int, only: int | None = None, force: bool = False) -> list[int]:
    """Lease up to ``limit`` due connections for this node; returns their ids."""
    now = utcnow()
    lease_until = now + dt.timedelta(seconds=app.settings.poller.lease_seconds)
    with unit_of_work(app) as session:
        stmt = select(Connection.id).where(
            *_pollable(), or_(Connection.lease_expires_at.is_(None), Connection.lease_expires_at < now))
        if only is not None:
            stmt = stmt.where(Connection.id == only)
        if not force:
            stmt = stmt.where(or_(Connection.next_poll_at.is_(None), Connection.next_poll_at <= now))
        stmt = stmt.order_by(Connection.next_poll_at.is_not(None), Connection.next_poll_at, Connection.id)
        stmt = stmt.limit(limit).with_for_update(skip_locked=True)
        ids = list(session.execute(stmt).scalars())
        if ids:
            session.execute(update(Connection).where(Connection.id.in_(ids)).values(
                lease_owner=app.node_id, lease_expires_at=lease_until))
    return ids


def release_stale_leases(app: Appliance) -> int:
    """Give back the leases this node still holds from a cycle that died (the database went away
    mid-cycle, say). A node runs one cycle at a time (poll_tick has max_instances=1), so at the start
    of a cycle none of its leases belongs to a poll in flight; without this, the connections a failed
    cycle held would wait ``lease_seconds`` for their leases to expire."""
    with unit_of_work(app) as session:
        result = session.execute(update(Connection).where(Connection.lease_owner == app.node_id).values(
            lease_owner=None, lease_expires_at=None))
    return int(getattr(result, "rowcount", 0) or 0)


def renew_lease(session: Session, app: Appliance, connection_id: int) -> bool:
    until = utcnow() + dt.timedelta(seconds=app.settings.poller.lease_seconds)
    result = session.execute(update(Connection).where(
        Connection.id == connection_id, Connection.lease_owner == app.node_id).values(lease_expires_at=until))
    return bool(getattr(result, "rowcount", 0))


def backlog(app: Appliance) -> int:
    now = utcnow()
    with app.store.read() as session:
        return int(session.execute(select(func.count()).select_from(Connection).where(
            *_pollable(), or_(Connection.next_poll_at.is_(None), Connection.next_poll_at <= now))).scalar_one())



class LeaseLost(Exception):
    """Another node took the connection (our lease expired): stop without writing more."""


class ShuttingDown(LeaseLost):
    """This node is stopping and the sync's grace has passed: stop at this commit without writing more
    (what earlier commits stored stays; the cycle gives the lease back, and the next poll resumes)."""


def interval_for(app: Appliance, connection: Connection) -> dt.timedelta:
    if connection.poll_interval_seconds:
        return dt.timedelta(seconds=connection.poll_interval_seconds)
    minutes = app.settings.venue(connection.venue).poll_interval_minutes or app.settings.poller.interval_minutes
    return dt.timedelta(minutes=minutes)



def check_lease(session: Session, app: Appliance, connection_id: int) -> None:
    """Called before every commit of a sync: renew our lease, or stop (lost to another node; shutting down)."""
    if app.stopping.must_checkpoint():
        raise ShuttingDown(connection_id)
    if not renew_lease(session, app, connection_id):
        raise LeaseLost(connection_id)
