"""The shared failure counters behind login and onboarding-link throttling (table login_throttle)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from appliance.errors import Conflict
from appliance.store.models import LoginThrottle


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
