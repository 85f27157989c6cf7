"""A poll's outcome on its connection: status (active / degraded / broken / reonboarding_required),
backoff, alerts, and coverage gaps opened by a failure and closed by a complete poll."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from appliance.errors import VenueAuthError, VenueError, VenuePermissionError, VenueRateLimited
from appliance.services import alerts as alert_service
from appliance.services import reconcile
from appliance.services.context import Appliance
from appliance.services.sync.claiming import POLLED, RED, LeaseLost, interval_for, unit_of_work
from appliance.services.sync.writes import Coverage, Held
from appliance.store.base import utcnow
from appliance.store.models import Connection, CoverageInterval, SyncCursor
from appliance.venues.base import Balance, WalletAdapter


def release(app: Appliance, connection_id: int, retry_in: dt.timedelta) -> None:
    """Give the lease back and move the next poll ``retry_in`` ahead: an outcome that left the
    connection due would have it claimed again at once, in the same cycle, without end."""
    with unit_of_work(app) as session:
        session.execute(update(Connection).where(
            Connection.id == connection_id, Connection.lease_owner == app.node_id).values(
            lease_owner=None, lease_expires_at=None, next_poll_at=utcnow() + retry_in))


def release_quietly(app: Appliance, connection_id: int, retry_in: dt.timedelta) -> None:
    with contextlib.suppress(DBAPIError):  # still unreachable: release_stale_leases gives it back next cycle
        release(app, connection_id, retry_in)


def _owned(connection: Connection, app: Appliance) -> bool:
    """Whether this node still holds the connection: once another node has taken it over (our lease
    expired), that node's poll decides its health, not ours."""
    return connection.lease_owner == app.node_id


def record_success(app: Appliance, connection_id: int, streams: Sequence[str] = (), held: Held | None = None,
                    check: tuple[WalletAdapter, list[Balance]] | None = None) -> None:
    now = utcnow()
    with unit_of_work(app) as session:
        connection = session.get(Connection, connection_id, with_for_update=True)
        assert connection is not None
        if not _owned(connection, app):
            raise LeaseLost(connection_id)
        coverage = Coverage(session, connection_id)
        if held is not None:
            held.apply(session, connection_id, coverage)
        sticky = app.settings.poller.require_reonboarding_after_break and connection.status in RED
        if connection.status == "reonboarding_required" or sticky:
            connection.status = "reonboarding_required"
            if not connection.status_reason:
                connection.status_reason = "the connection broke; the employee must submit a new key"
        elif connection.status in ("pending", "degraded", "broken", "active"):
            connection.status = "active"
            connection.status_reason = ""
        connection.last_attempt_at = now
        connection.last_success_at = now
        connection.consecutive_failures = 0
        connection.consecutive_rate_limits = 0
        connection.last_error_class = None
        connection.last_error = None
        connection.next_poll_at = now + interval_for(app, connection)
        connection.lease_owner = None
        connection.lease_expires_at = None
        # Gaps of streams no page can fill (``all``: the adapter had no streams to name) are filled by
        # this complete poll; stream gaps were closed by the pages that covered them (extend_coverage).
        for stream, gaps in coverage.gaps.items():
            for gap in gaps:
                if stream not in streams and gap.closed_at is None and reconcile.closes(gap):
                    gap.end_at = now
                    gap.closed_at = now
        if check is not None:
            session.flush()
            adapter, balances = check
            reconcile.record(session, connection, streams[0],
                             reconcile.mismatches(session, connection_id, adapter, balances))


def record_failure(app: Appliance, connection_id: int, exc: VenueError, streams: Sequence[str] = (),
                    held: Held | None = None) -> None:
    now = utcnow()
    settings = app.settings.poller
    with unit_of_work(app) as session:
        connection = session.get(Connection, connection_id, with_for_update=True)
        if connection is None or not _owned(connection, app):
            return
        if held is not None:
            held.apply(session, connection_id)  # before the gaps: they start where coverage now ends
        connection.last_attempt_at = now
        # A rate limit is the venue working as designed: it grows the backoff and leaves a gap, but never
        # counts toward broken (only failures do; a throttled connection stays amber at worst).
        rate_limited = isinstance(exc, VenueRateLimited)
        if rate_limited:
            connection.consecutive_rate_limits += 1
        else:
            connection.consecutive_failures += 1
        connection.last_error_class = exc.error_class
        connection.last_error = exc.message[:500]
        connection.lease_owner = None
        connection.lease_expires_at = None
        reason = _gap_reason(exc)
        broke = isinstance(exc, (VenueAuthError, VenuePermissionError)) or (
            not rate_limited and connection.consecutive_failures >= settings.failure_threshold
            and connection.status != "pending")
        if connection.status not in POLLED:
            pass  # superseded or offboarded while the poll ran: its status is no longer the poller's
        elif broke and connection.status not in RED:
            connection.status = ("reonboarding_required" if settings.require_reonboarding_after_break
                                 else "broken")
            connection.status_reason = exc.message[:500]
            alert_service.raise_alert(
                session, kind="connection_broken", severity="critical", employee_id=connection.employee_id,
                connection_id=connection.id, title=f"{connection.label or connection.venue} connection broken: "
                f"{exc.error_class.replace('_', ' ')}",
                detail={"venue": connection.venue, "error_class": exc.error_class, "message": exc.message[:300]})
        elif connection.status in ("active", "pending") and not broke:
            connection.status = "degraded"
            connection.status_reason = exc.message[:500]
        if isinstance(exc, VenueRateLimited):
            delay = rate_limit_backoff(exc.retry_after, connection.consecutive_rate_limits,
                                       settings.backoff_max_minutes)
        elif broke:
            delay = interval_for(app, connection)
        else:
            base = min(2 ** connection.consecutive_failures, settings.backoff_max_minutes * 2) * 30.0
            jittered = base * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not secrecy
            delay = dt.timedelta(seconds=min(jittered, settings.backoff_max_minutes * 60))
        connection.next_poll_at = now + delay
        _open_gaps(session, connection, reason, exc.message[:500], streams)


def rate_limit_backoff(retry_after: float, in_a_row: int, max_minutes: int) -> dt.timedelta:
    """The wait after the ``in_a_row``-th rate limit since the last success: the venue's Retry-After the
    first time, doubling with each further one (a venue that keeps throttling is asked less and less
    often) up to ``poller.backoff_max_minutes``, never below what the venue asked for."""
    asked = max(retry_after, 1.0)
    grown = min(asked * 2 ** max(in_a_row - 1, 0), max_minutes * 60.0)
    return dt.timedelta(seconds=max(asked, grown))


def _gap_reason(exc: VenueError) -> str:
    return {"authentication": "auth_error", "permission": "permission_error", "rate_limit": "rate_limited",
            "bad_data": "bad_data", "refused": "refused"}.get(exc.error_class, "venue_down")


def _open_gaps(session: Session, connection: Connection, reason: str, detail: str, streams: Sequence[str] = ()
               ) -> None:
    """One open gap per stream of the adapter (a stream with an open gap keeps it: its start stands).

    The streams come from the adapter, not from the cursors stored so far: a connection whose first
    poll fails has no cursor yet, and a gap named after no stream would never be filled by a page."""
    names = list(streams) or [s for (s,) in session.execute(select(SyncCursor.stream).where(
        SyncCursor.connection_id == connection.id))] or ["all"]
    for stream in names:
        open_gap = session.execute(select(CoverageInterval).where(
            CoverageInterval.connection_id == connection.id, CoverageInterval.stream == stream,
            CoverageInterval.kind == "gap", CoverageInterval.closed_at.is_(None),
            CoverageInterval.reason.not_in(reconcile.STANDING))).scalars().first()
        if open_gap is not None:
            continue
        complete = session.execute(select(CoverageInterval.end_at).where(
            CoverageInterval.connection_id == connection.id, CoverageInterval.stream == stream,
            CoverageInterval.kind == "complete")).scalar_one_or_none()
        session.add(CoverageInterval(connection_id=connection.id, stream=stream, kind="gap",
                                     start_at=complete or connection.created_at, reason=reason, detail=detail))
