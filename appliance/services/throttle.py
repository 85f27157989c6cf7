"""The shared failure counters behind login, onboarding-link and portal-link throttling (table login_throttle)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from appliance.errors import Conflict, TooManyRequests
from appliance.store.base import utcnow
from appliance.store.models import LoginThrottle
from appliance.store.session import Store

WINDOW = dt.timedelta(minutes=10)


def locked_row(session: Session, key: str, now: dt.datetime) -> LoginThrottle:
    """The counter row for ``key``, locked for update, created when missing.

    Parallel failures for a new key race to create the row: on PostgreSQL the loser's INSERT hits
    the primary key, so it is tried in a savepoint and the winner's row is read (and locked)
    instead of failing the request with a 500.
    """
    row = session.get(LoginThrottle, key, with_for_update=True)
    if row is not None:
        return row
    try:
        with session.begin_nested():
            session.add(LoginThrottle(key=key, failures=0, window_start=now, lockouts=0))
    except IntegrityError:
        pass
    row = session.get(LoginThrottle, key, with_for_update=True, populate_existing=True)
    if row is None:  # pragma: no cover - the row was just inserted or seen
        raise Conflict("the throttle counter could not be written; try again")
    return row


def refuse_if_locked(store: Store, key: str, message: str) -> None:
    """TooManyRequests (with Retry-After) while ``key`` is locked out."""
    with store.read() as session:
        row = session.get(LoginThrottle, key)
        if row is not None and row.locked_until is not None and row.locked_until > utcnow():
            raise TooManyRequests(message, retry_after=int((row.locked_until - utcnow()).total_seconds()) + 1)


def count_failure(store: Store, key: str, limit: int) -> None:
    """One more failure for ``key`` in the current window; past ``limit`` the key is locked for a window."""
    now = utcnow()
    with store.unit_of_work() as session:
        row = locked_row(session, key, now)
        if row.window_start < now - WINDOW:
            row.window_start, row.failures = now, 0
        row.failures += 1
        if row.failures > limit:
            row.locked_until = now + WINDOW
            row.lockouts += 1
            row.failures = 0
