"""One connection's poll: check the lease, open the credentials, call the venue outside any
transaction, store pages as they come, and record the outcome (see :mod:`.health`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from appliance.audit.writer import AuditRecord, append
from appliance.errors import IntegrityFailure, KeyProviderError, NotFound, VenueError
from appliance.services import alerts as alert_service
from appliance.services.context import Appliance
from appliance.services.sync.claiming import LeaseLost, check_lease, interval_for, unit_of_work
from appliance.services.sync.health import record_failure, record_success, release, release_quietly
from appliance.services.sync.writes import Coverage, Held, store_page
from appliance.store.base import utcnow
from appliance.store.models import Connection, SyncCursor
from appliance.store.session import describe_db_error
from appliance.venues.base import Credentials, VenueAdapter, WalletAdapter

log = logging.getLogger(__name__)


@dataclass
class SyncOutcome:
    connection_id: int
    venue: str
    ok: bool
    error_class: str | None = None
    message: str = ""
    records: int = 0
    pages: int = 0
    cpu_ms: float = 0.0
    # The conduct rules evaluated over what this sync stored (cycles.py): alerts raised, CPU spent.
    alerts: int = 0
    rules_cpu_ms: float = 0.0



@dataclass
class _Start:
    """What the first transaction of a sync learns."""

    venue: str
    adapter: VenueAdapter | WalletAdapter
    retry_in: dt.timedelta
    subject: Any
    cursors: dict[str, dict[str, Any]]
    scope_due: bool
    integrity: IntegrityFailure | None = None


def sync_connection(app: Appliance, connection_id: int) -> SyncOutcome:
    try:
        start = _start(app, connection_id)
    except DBAPIError as exc:  # the lease stays ours until the next cycle gives it back (release_stale_leases)
        log.warning("sync of connection %s interrupted by the database: %s", connection_id, describe_db_error(exc))
        return SyncOutcome(connection_id, "?", False, "database", describe_db_error(exc))
    if isinstance(start, SyncOutcome):
        return start
    venue, adapter = start.venue, start.adapter
    outcome = SyncOutcome(connection_id, venue, True)
    held = Held(app.settings.poller.lease_seconds)
    try:
        if start.integrity is not None:
            raise start.integrity
        if (isinstance(adapter, VenueAdapter) and start.scope_due
                and not _reprobe(app, connection_id, adapter, start.subject)):
            outcome.ok, outcome.error_class = False, "scope_escalation"
            return outcome
        # One authenticated client for the whole poll (not one per page); dropped when the poll ends.
        reuse = adapter.reusing(start.subject) if isinstance(adapter, VenueAdapter) else contextlib.nullcontext()
        with reuse:
            balances = adapter.fetch_balances(start.subject)
            held.balances = (balances, utcnow())
            caught_up = True
            for stream in adapter.streams:
                caught_up &= _sync_stream(app, connection_id, adapter, start.subject, stream,
                                          start.cursors.get(stream, {}), outcome, held)
            positions = adapter.fetch_positions(start.subject)
        if positions or getattr(adapter, "kind", "") == "prediction":
            held.positions = (positions, utcnow())
        # A wallet whose history is read to the end is reconciled: its balances against its transfers.
        check = (adapter, balances) if isinstance(adapter, WalletAdapter) and caught_up and adapter.streams else None
        record_success(app, connection_id, adapter.streams, held, check)
    except LeaseLost:
        outcome.ok, outcome.error_class = False, "lease_lost"
    except IntegrityFailure as exc:
        # The tamper response (broken, alert, audit) is committed; retrying before someone acts on it
        # would only repeat it, so the connection waits a full interval.
        outcome.ok, outcome.error_class, outcome.message = False, "integrity", exc.message
        release(app, connection_id, start.retry_in)
    except VenueError as exc:
        # What this poll fetched before the failure (balances, pages) is written with the failure.
        outcome.ok, outcome.error_class, outcome.message = False, exc.error_class, exc.message
        record_failure(app, connection_id, exc, adapter.streams, held)
    except KeyProviderError as exc:
        # The key provider (HSM, credential store) is down: not the connection's fault, so its health is
        # left alone; the cycle's failures show it.
        outcome.ok, outcome.error_class, outcome.message = False, "keys", exc.message
        release(app, connection_id, start.retry_in)
    except DBAPIError as exc:
        # The database went away (restart, failover): the venue is not to blame and nothing was half
        # written. Try to give the lease back; if that fails too, the next cycle does (release_stale_leases).
        log.warning("sync of connection %s interrupted by the database: %s", connection_id, describe_db_error(exc))
        outcome.ok, outcome.error_class, outcome.message = False, "database", describe_db_error(exc)
        release_quietly(app, connection_id, dt.timedelta(seconds=app.settings.poller.tick_seconds))
    except Exception as exc:
        log.exception("sync of connection %s failed unexpectedly", connection_id)
        outcome.ok, outcome.error_class, outcome.message = False, "internal", type(exc).__name__
        record_failure(app, connection_id, VenueError(venue, f"internal error ({type(exc).__name__})"),
                        adapter.streams)
    return outcome


def _start(app: Appliance, connection_id: int) -> _Start | SyncOutcome:
    """One transaction: whether this node still holds the connection, its adapter, what the adapter is
    called with (the address for wallets, unsealed credentials for keys), the streams' cursors, and
    whether the key's scope is due for a re-probe. An outcome instead when there is nothing to poll."""
    from appliance.services.keys import open_connection_credentials

    # A unit of work, not a read: on a value that fails authentication open_connection_credentials
    # writes the tamper response (broken, alert, audit) into this session, and it must be committed
    # (the IntegrityFailure is raised after it: never treated as empty, never retried with another key).
    with unit_of_work(app) as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            return SyncOutcome(connection_id, "?", False, "missing")
        venue = connection.venue
        if connection.lease_owner != app.node_id:
            # Queued behind other polls long enough for the lease to expire and be taken by another
            # node: that node polls it; calling the venue here too would poll it twice.
            return SyncOutcome(connection_id, venue, False, "lease_lost")
        retry_in = interval_for(app, connection)
        try:
            adapter = app.venues.get(venue)
        except NotFound:  # a venue disabled in the configuration after onboarding: try again later
            connection.lease_owner = connection.lease_expires_at = None
            connection.next_poll_at = utcnow() + retry_in
            return SyncOutcome(connection_id, venue, False, "disabled", f"venue {venue} is not enabled")
        checked = connection.scope_checked_at
        scope_due = checked is None or checked < utcnow() - dt.timedelta(hours=app.settings.poller.scope_reprobe_hours)
        cursors = {row.stream: dict(row.cursor or {}) for row in session.execute(
            select(SyncCursor).where(SyncCursor.connection_id == connection_id)).scalars()}
        start = _Start(venue, adapter, retry_in, connection.address, cursors, scope_due)
        if isinstance(adapter, WalletAdapter):
            return start
        try:
            start.subject = open_connection_credentials(session, app.keys, connection_id)
        except IntegrityFailure as exc:
            start.integrity = exc  # leave the block normally so that the tamper response commits
    return start


def _reprobe(app: Appliance, connection_id: int, adapter: VenueAdapter, creds: Credentials) -> bool:
    """Test the stored key's scope again. A key that gained trade, transfer or withdraw permission
    raises an alert and stops being used (its sealed credentials are wiped). Returns False then."""
    scope = adapter.probe_scope(creds)
    with unit_of_work(app) as session:
        check_lease(session, app, connection_id)
        connection = session.get(Connection, connection_id)
        assert connection is not None
        connection.scope = scope.as_dict()
        connection.scope_checked_at = utcnow()
        if not scope.escalated:
            return True
        connection.status = "reonboarding_required"
        connection.status_reason = (f"the key gained {', '.join(scope.granted())} permission; it is no longer used. "
                                    "The employee must submit a new read-only key.")
        connection.api_key_sealed = connection.api_secret_sealed = connection.passphrase_sealed = None
        connection.next_poll_at = None
        connection.lease_owner = connection.lease_expires_at = None
        alert_service.raise_alert(
            session, kind="scope_escalation", severity="critical", employee_id=connection.employee_id,
            connection_id=connection.id, title=f"{adapter.name} key gained {', '.join(scope.granted())} permission",
            detail={"venue": adapter.id, "granted": scope.granted(), "fingerprint": connection.key_fingerprint})
        append(session, [AuditRecord(
            action="sync.scope_escalation", actor_type="system", resource_type="connections",
            resource_id=str(connection.id), method="POLL", path="poller", outcome="failure",
            detail=f'{{"granted": {scope.granted()!r}, "venue": "{adapter.id}"}}'.replace("'", '"'))])
    return False


def _sync_stream(app: Appliance, connection_id: int, adapter: VenueAdapter | WalletAdapter, subject: Any,
                 stream: str, cursor: dict[str, Any], outcome: SyncOutcome, held: Held) -> bool:
    """Fetch and store pages of one stream; returns whether the stream was read to its end."""
    for _ in range(app.settings.poller.max_pages_per_sync):
        page = adapter.fetch_transactions(subject, stream, cursor)
        if held.must_commit(page):
            with unit_of_work(app) as session:
                check_lease(session, app, connection_id)
                coverage = Coverage(session, connection_id)
                held.apply(session, connection_id, coverage)
                outcome.records += store_page(session, connection_id, stream, page, coverage)
        else:
            held.pages.append((stream, page))
        outcome.pages += 1
        cursor = page.cursor
        if page.done:
            return True
    return False
