"""The sync engine: which connections are due, polling one, recording outcomes, health and coverage.

- Claiming: each node leases due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; a conditional
  update under SQLite's single writer). A lease expires after ``poller.lease_seconds``, so a dead
  node's connections are taken over; it is renewed with every commit of a sync (at least every third
  of the lease), and a sync whose lease another node took stops before calling the venue or writing,
  so no connection is polled by two nodes at once. A node gives back its own leftover leases at the
  start of each cycle (a cycle that died with the database), and a connection whose key was wiped is
  never claimed.
- Writing: venue calls happen outside transactions. A page with records is stored together with the
  stream's cursor in one transaction (idempotent on (connection, stream, venue id)), so a crash at any
  instant loses nothing and duplicates nothing. Pages without records, and the poll's observations,
  are held and written with the next commit (at the latest the one that records the outcome): losing
  them in a crash loses no record, and an incremental poll that finds nothing new costs two short
  transactions (check the lease, open the credentials, read the cursors; write the outcome) instead
  of one per page and stream. Balances and prediction positions are observations with
  validity intervals: a new row only when a value changes; ``observed_until`` moves forward on every
  successful poll. Nothing is ever deleted by a sync.
- Health: active / degraded (transient failures) / broken (authentication or permission failure, or
  too many failures) / reonboarding_required (broken with ``require_reonboarding_after_break``, or a key
  that gained dangerous permissions). An authentication failure turns the connection broken in the
  same poll and raises an alert.
- Coverage: per stream, one ``complete`` interval that grows with each successful page, and ``gap``
  intervals (with the reason) opened by a failed poll for every stream of the adapter and closed when
  a later poll fills them.
- Every outcome moves ``next_poll_at`` ahead (interval, backoff, retry-after), so a cycle never claims
  the same connection twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from appliance.audit.writer import AuditRecord, append
from appliance.errors import (
    IntegrityFailure,
    KeyProviderError,
    NotFound,
    VenueAuthError,
    VenueError,
    VenuePermissionError,
    VenueRateLimited,
)
from appliance.services import alerts as alert_service
from appliance.services import reconcile
from appliance.services.context import Appliance
from appliance.store.base import utcnow
from appliance.store.models import (
    BalanceSnapshot,
    Connection,
    CoverageInterval,
    PollCycle,
    PredictionPosition,
    SyncCursor,
    Transaction,
)
from appliance.store.session import describe_db_error
from appliance.venues.base import Balance, Credentials, Page, PositionRecord, TxRecord, VenueAdapter, WalletAdapter

log = logging.getLogger(__name__)

POLLED = ("pending", "active", "degraded", "broken", "reonboarding_required")
RED = ("broken", "reonboarding_required")


# -- claiming -------------------------------------------------------------------------------------

def _write(app: Appliance) -> contextlib.AbstractContextManager[Session]:
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
    with _write(app) as session:
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
    with _write(app) as session:
        result = session.execute(update(Connection).where(Connection.lease_owner == app.node_id).values(
            lease_owner=None, lease_expires_at=None))
    return int(getattr(result, "rowcount", 0) or 0)


def _renew_lease(session: Session, app: Appliance, connection_id: int) -> bool:
    until = utcnow() + dt.timedelta(seconds=app.settings.poller.lease_seconds)
    result = session.execute(update(Connection).where(
        Connection.id == connection_id, Connection.lease_owner == app.node_id).values(lease_expires_at=until))
    return bool(getattr(result, "rowcount", 0))


def backlog(app: Appliance) -> int:
    now = utcnow()
    with app.store.read() as session:
        return int(session.execute(select(func.count()).select_from(Connection).where(
            *_pollable(), or_(Connection.next_poll_at.is_(None), Connection.next_poll_at <= now))).scalar_one())


# -- one connection --------------------------------------------------------------------------------

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


class LeaseLost(Exception):
    """Another node took the connection (our lease expired): stop without writing more."""


def interval_for(app: Appliance, connection: Connection) -> dt.timedelta:
    if connection.poll_interval_seconds:
        return dt.timedelta(seconds=connection.poll_interval_seconds)
    minutes = app.settings.venue(connection.venue).poll_interval_minutes or app.settings.poller.interval_minutes
    return dt.timedelta(minutes=minutes)


@dataclass
class _Held:
    """Writes a sync holds back until its next commit, so that an incremental poll that finds nothing
    new writes once instead of once per page.

    Only what a crash may lose without losing a record is held: pages without records (their cursor
    and coverage: lost, they are fetched again and store nothing new), and this poll's balance and
    position observations (lost, the poll did not complete and observed nothing). A page with records
    is committed at once, with everything held before it, in page order."""

    lease_seconds: float
    pages: list[tuple[str, Page]] = field(default_factory=list)
    balances: tuple[list[Balance], dt.datetime] | None = None
    positions: tuple[list[PositionRecord], dt.datetime] | None = None
    renewed: float = field(default_factory=time.monotonic)

    def must_commit(self, page: Page) -> bool:
        """Records (or reorg marks) must be stored now; and the lease must not run out while we hold."""
        return (bool(page.records) or (page.notes or {}).get("orphaned_from_block") is not None
                or time.monotonic() - self.renewed > self.lease_seconds / 3)

    def apply(self, session: Session, connection_id: int, coverage: Coverage | None = None) -> int:
        """Write everything held, in order; returns the records stored (none: held pages have none)."""
        stored = 0
        if self.balances is not None:
            record_balances(session, connection_id, *self.balances)
            self.balances = None
        if self.pages and coverage is None:
            coverage = Coverage(session, connection_id)
        for stream, page in self.pages:
            # Held pages have no records, so nothing queries between them: one flush for all.
            stored += store_page(session, connection_id, stream, page, coverage, flush=False)
        self.pages = []
        session.flush()
        if self.positions is not None:
            record_positions(session, connection_id, *self.positions)
            self.positions = None
        self.renewed = time.monotonic()
        return stored


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
    started_cpu = time.thread_time()
    try:
        start = _start(app, connection_id)
    except DBAPIError as exc:  # the lease stays ours until the next cycle gives it back (release_stale_leases)
        log.warning("sync of connection %s interrupted by the database: %s", connection_id, describe_db_error(exc))
        return SyncOutcome(connection_id, "?", False, "database", describe_db_error(exc))
    if isinstance(start, SyncOutcome):
        return start
    venue, adapter = start.venue, start.adapter
    outcome = SyncOutcome(connection_id, venue, True)
    held = _Held(app.settings.poller.lease_seconds)
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
        _record_success(app, connection_id, adapter.streams, held, check)
    except LeaseLost:
        outcome.ok, outcome.error_class = False, "lease_lost"
    except IntegrityFailure as exc:
        # The tamper response (broken, alert, audit) is committed; retrying before someone acts on it
        # would only repeat it, so the connection waits a full interval.
        outcome.ok, outcome.error_class, outcome.message = False, "integrity", exc.message
        _release(app, connection_id, start.retry_in)
    except VenueError as exc:
        # What this poll fetched before the failure (balances, pages) is written with the failure.
        outcome.ok, outcome.error_class, outcome.message = False, exc.error_class, exc.message
        _record_failure(app, connection_id, exc, adapter.streams, held)
    except KeyProviderError as exc:
        # The key provider (HSM, credential store) is down: not the connection's fault, so its health is
        # left alone; the cycle's failures show it.
        outcome.ok, outcome.error_class, outcome.message = False, "keys", exc.message
        _release(app, connection_id, start.retry_in)
    except DBAPIError as exc:
        # The database went away (restart, failover): the venue is not to blame and nothing was half
        # written. Try to give the lease back; if that fails too, the next cycle does (release_stale_leases).
        log.warning("sync of connection %s interrupted by the database: %s", connection_id, describe_db_error(exc))
        outcome.ok, outcome.error_class, outcome.message = False, "database", describe_db_error(exc)
        _release_quietly(app, connection_id, dt.timedelta(seconds=app.settings.poller.tick_seconds))
    except Exception as exc:
        log.exception("sync of connection %s failed unexpectedly", connection_id)
        outcome.ok, outcome.error_class, outcome.message = False, "internal", type(exc).__name__
        _record_failure(app, connection_id, VenueError(venue, f"internal error ({type(exc).__name__})"),
                        adapter.streams)
    finally:
        outcome.cpu_ms = (time.thread_time() - started_cpu) * 1000
    return outcome


def _start(app: Appliance, connection_id: int) -> _Start | SyncOutcome:
    """One transaction: whether this node still holds the connection, its adapter, what the adapter is
    called with (the address for wallets, unsealed credentials for keys), the streams' cursors, and
    whether the key's scope is due for a re-probe. An outcome instead when there is nothing to poll."""
    from appliance.services.keys import open_connection_credentials

    # A unit of work, not a read: on a value that fails authentication open_connection_credentials
    # writes the tamper response (broken, alert, audit) into this session, and it must be committed
    # (the IntegrityFailure is raised after it: never treated as empty, never retried with another key).
    with _write(app) as session:
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
    with _write(app) as session:
        _check_lease(session, app, connection_id)
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


def _check_lease(session: Session, app: Appliance, connection_id: int) -> None:
    if not _renew_lease(session, app, connection_id):
        raise LeaseLost(connection_id)


def _sync_stream(app: Appliance, connection_id: int, adapter: VenueAdapter | WalletAdapter, subject: Any,
                 stream: str, cursor: dict[str, Any], outcome: SyncOutcome, held: _Held) -> bool:
    """Fetch and store pages of one stream; returns whether the stream was read to its end."""
    for _ in range(app.settings.poller.max_pages_per_sync):
        page = adapter.fetch_transactions(subject, stream, cursor)
        if held.must_commit(page):
            with _write(app) as session:
                _check_lease(session, app, connection_id)
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


# -- writes ------------------------------------------------------------------------------------------

class Coverage:
    """A connection's sync state that pages change — each stream's cursor row, ``complete`` interval and
    open gaps — read with two queries per transaction instead of three per page (an incremental poll
    stores several pages, most of them empty, in its last transaction)."""

    def __init__(self, session: Session, connection_id: int) -> None:
        self.cursors = {row.stream: row for row in session.execute(
            select(SyncCursor).where(SyncCursor.connection_id == connection_id)).scalars()}
        self.complete: dict[str, CoverageInterval] = {}
        self.gaps: dict[str, list[CoverageInterval]] = defaultdict(list)
        for row in session.execute(select(CoverageInterval).where(
                CoverageInterval.connection_id == connection_id,
                or_(CoverageInterval.kind == "complete", CoverageInterval.closed_at.is_(None)))
                .order_by(CoverageInterval.id)).scalars():
            if row.kind == "complete":
                self.complete.setdefault(row.stream, row)
            elif row.kind == "gap":
                self.gaps[row.stream].append(row)


def store_page(session: Session, connection_id: int, stream: str, page: Page, coverage: Coverage | None = None,
               *, flush: bool = True) -> int:
    """Insert the page's new records, apply reorg marks, advance the cursor and coverage: one transaction.
    (``flush=False``: the caller flushes once after several pages of one transaction.)"""
    orphaned_from = page.notes.get("orphaned_from_block") if page.notes else None
    if orphaned_from is not None:
        session.execute(update(Transaction).where(
            Transaction.connection_id == connection_id, Transaction.stream == stream,
            Transaction.block_number >= int(orphaned_from), Transaction.orphaned.is_(False)).values(orphaned=True))
    inserted = insert_records(session, connection_id, stream, page.records)
    row = coverage.cursors.get(stream) if coverage is not None else session.get(SyncCursor, (connection_id, stream))
    if row is None:
        row = SyncCursor(connection_id=connection_id, stream=stream, cursor=page.cursor)
        session.add(row)
        if coverage is not None:
            coverage.cursors[stream] = row
    else:
        row.cursor = page.cursor
    if page.complete_until is not None:
        extend_coverage(session, connection_id, stream, page, inserted, coverage)
    if flush:
        session.flush()
    return inserted


def insert_records(session: Session, connection_id: int, stream: str, records: Sequence[TxRecord]) -> int:
    """Idempotent on (connection, stream, venue id): records already stored are skipped, never rewritten.

    A chain transfer whose stored row was orphaned by a reorg and that reappears in another block
    is stored as a second row (its id suffixed with the new block's hash); the orphaned row stays.
    """
    if not records:
        return 0
    wanted = {r.venue_tx_id for r in records} | {_reorg_id(r) for r in records if r.block_hash}
    existing: dict[str, tuple[bool, str | None]] = {}
    id_list = list(wanted)
    for start in range(0, len(id_list), 500):
        for venue_tx_id, orphaned, block_hash in session.execute(select(
                Transaction.venue_tx_id, Transaction.orphaned, Transaction.block_hash).where(
                Transaction.connection_id == connection_id, Transaction.stream == stream,
                Transaction.venue_tx_id.in_(id_list[start:start + 500]))):
            existing[venue_tx_id] = (orphaned, block_hash)
    added = 0
    for r in records:
        venue_tx_id = r.venue_tx_id
        stored = existing.get(venue_tx_id)
        if stored is not None and stored[0] and r.block_hash and stored[1] != r.block_hash:
            venue_tx_id = _reorg_id(r)
            stored = existing.get(venue_tx_id)
        if stored is not None:
            continue
        existing[venue_tx_id] = (False, r.block_hash)
        session.add(Transaction(
            connection_id=connection_id, stream=stream, venue_tx_id=venue_tx_id[:200], kind=r.kind,
            occurred_at=r.occurred_at, asset=r.asset[:64], amount=r.amount, market=r.market[:100],
            quote_asset=r.quote_asset, quote_amount=r.quote_amount, price=r.price, fee_asset=r.fee_asset,
            fee_amount=r.fee_amount, provenance="chain" if r.block_number is not None else "api",
            block_number=r.block_number, block_hash=r.block_hash, raw=dict(r.raw) if r.raw else None))
        added += 1
    session.flush()
    return added


def _reorg_id(record: TxRecord) -> str:
    return f"{record.venue_tx_id}@{(record.block_hash or '')[:18]}"


def extend_coverage(session: Session, connection_id: int, stream: str, page: Page, inserted: int,
                    coverage: Coverage | None = None) -> None:
    assert page.complete_until is not None
    until = page.complete_until
    coverage = coverage or Coverage(session, connection_id)
    complete = coverage.complete.get(stream)
    if complete is None:
        earliest = min((r.occurred_at for r in page.records), default=until)
        start = page.notes.get("complete_from") if page.notes else None
        complete = CoverageInterval(
            connection_id=connection_id, stream=stream, kind="complete",
            start_at=_as_time(start) if start else min(earliest, until), end_at=until,
            detail=_notes_text(page))
        session.add(complete)
        coverage.complete[stream] = complete
    elif complete.end_at is None or until > complete.end_at:
        complete.end_at = until
        if page.notes:
            complete.detail = _notes_text(page)
    for gap in coverage.gaps.get(stream, ()):
        if gap.closed_at is None and until >= gap.start_at and reconcile.closes(gap):
            gap.end_at = until
            gap.closed_at = utcnow()
    if (page.notes or {}).get("market_list") == "derived":
        _mark_unverified_markets(session, connection_id, stream, page, complete, coverage)


def _mark_unverified_markets(session: Session, connection_id: int, stream: str, page: Page,
                             complete: CoverageInterval, coverage: Coverage) -> None:
    """The venue answers trades only market by market, for markets the adapter derived from balances
    and transfers: a market whose two assets were never seen by a poll (bought and sold back between
    two polls) would be missed. The ``complete`` interval cannot prove otherwise, so the stream keeps
    a standing gap over the same span that says so and names the markets read."""
    markets = ", ".join(str(m) for m in (page.notes or {}).get("markets") or []) or "none"
    detail = (f"trades read for the markets derived from balances and transfers ({markets}); a market "
              "whose assets were never held at a poll is not asked about")[:4000]
    standing = next((g for g in coverage.gaps.get(stream, ()) if g.reason == "unverified_markets"), None)
    if standing is None:
        standing = CoverageInterval(connection_id=connection_id, stream=stream, kind="gap", reason="unverified_markets",
                                    start_at=complete.start_at, end_at=complete.end_at, detail=detail)
        session.add(standing)
        coverage.gaps[stream].append(standing)
    else:
        standing.start_at = min(standing.start_at, complete.start_at)
        standing.end_at = complete.end_at
        standing.detail = detail


def _as_time(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _notes_text(page: Page) -> str:
    import json

    notes = {k: v for k, v in (page.notes or {}).items() if k != "orphaned_from_block"}
    return json.dumps(notes, sort_keys=True, default=str)[:4000] if notes else ""


def record_balances(session: Session, connection_id: int, balances: Iterable[Balance], now: dt.datetime) -> None:
    current = {(b.asset, b.account): b for b in session.execute(select(BalanceSnapshot).where(
        BalanceSnapshot.connection_id == connection_id, BalanceSnapshot.valid_to.is_(None))).scalars()}
    fresh: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for balance in balances:
        fresh[(balance.asset[:64], balance.account[:100])] += balance.amount
    for key, amount in fresh.items():
        row = current.pop(key, None)
        if row is not None and row.amount == amount:
            row.observed_until = now
            continue
        if row is not None:
            row.valid_to = now
        session.add(BalanceSnapshot(connection_id=connection_id, asset=key[0], account=key[1], amount=amount,
                                    valid_from=now, observed_until=now))
    for row in current.values():  # assets gone from the account: record that they went to zero
        if row.amount == 0:
            row.observed_until = now
            continue
        row.valid_to = now
        session.add(BalanceSnapshot(connection_id=connection_id, asset=row.asset, account=row.account,
                                    amount=Decimal(0), valid_from=now, observed_until=now))
    session.flush()


def record_positions(session: Session, connection_id: int, positions: Iterable[PositionRecord],
                     now: dt.datetime) -> None:
    current = {(p.market_id, p.outcome): p for p in session.execute(select(PredictionPosition).where(
        PredictionPosition.connection_id == connection_id, PredictionPosition.valid_to.is_(None))).scalars()}
    for position in positions:
        key = (position.market_id[:200], position.outcome[:100])
        row = current.pop(key, None)
        same = (row is not None and row.size == position.size and row.avg_price == position.avg_price
                and row.current_value == position.current_value)
        if row is not None and same:
            row.observed_until = now
            continue
        if row is not None:
            row.valid_to = now
        session.add(PredictionPosition(
            connection_id=connection_id, market_id=key[0], outcome=key[1], market_title=position.market_title[:500],
            category=position.category[:100], size=position.size, avg_price=position.avg_price,
            current_value=position.current_value, valid_from=now, observed_until=now))
    for row in current.values():
        if row.size == 0:
            row.observed_until = now
            continue
        row.valid_to = now
        session.add(PredictionPosition(
            connection_id=connection_id, market_id=row.market_id, outcome=row.outcome, market_title=row.market_title,
            category=row.category, size=Decimal(0), avg_price=row.avg_price, current_value=Decimal(0),
            valid_from=now, observed_until=now))
    session.flush()


# -- health ------------------------------------------------------------------------------------------

def _release(app: Appliance, connection_id: int, retry_in: dt.timedelta) -> None:
    """Give the lease back and move the next poll ``retry_in`` ahead: an outcome that left the
    connection due would have it claimed again at once, in the same cycle, without end."""
    with _write(app) as session:
        session.execute(update(Connection).where(
            Connection.id == connection_id, Connection.lease_owner == app.node_id).values(
            lease_owner=None, lease_expires_at=None, next_poll_at=utcnow() + retry_in))


def _release_quietly(app: Appliance, connection_id: int, retry_in: dt.timedelta) -> None:
    with contextlib.suppress(DBAPIError):  # still unreachable: release_stale_leases gives it back next cycle
        _release(app, connection_id, retry_in)


def _owned(connection: Connection, app: Appliance) -> bool:
    """Whether this node still holds the connection: once another node has taken it over (our lease
    expired), that node's poll decides its health, not ours."""
    return connection.lease_owner == app.node_id


def _record_success(app: Appliance, connection_id: int, streams: Sequence[str] = (), held: _Held | None = None,
                    check: tuple[WalletAdapter, list[Balance]] | None = None) -> None:
    now = utcnow()
    with _write(app) as session:
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


def _record_failure(app: Appliance, connection_id: int, exc: VenueError, streams: Sequence[str] = (),
                    held: _Held | None = None) -> None:
    now = utcnow()
    settings = app.settings.poller
    with _write(app) as session:
        connection = session.get(Connection, connection_id, with_for_update=True)
        if connection is None or not _owned(connection, app):
            return
        if held is not None:
            held.apply(session, connection_id)  # before the gaps: they start where coverage now ends
        connection.last_attempt_at = now
        connection.consecutive_failures += 1
        connection.last_error_class = exc.error_class
        connection.last_error = exc.message[:500]
        connection.lease_owner = None
        connection.lease_expires_at = None
        reason = _gap_reason(exc)
        broke = isinstance(exc, (VenueAuthError, VenuePermissionError)) or (
            connection.consecutive_failures >= settings.failure_threshold and connection.status != "pending")
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
            delay = dt.timedelta(seconds=max(exc.retry_after, 1))
        elif broke:
            delay = interval_for(app, connection)
        else:
            base = min(2 ** connection.consecutive_failures, settings.backoff_max_minutes * 2) * 30.0
            jittered = base * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not secrecy
            delay = dt.timedelta(seconds=min(jittered, settings.backoff_max_minutes * 60))
        connection.next_poll_at = now + delay
        _open_gaps(session, connection, reason, exc.message[:500], streams)


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


# -- cycles ------------------------------------------------------------------------------------------

@dataclass
class CycleResult:
    started_at: dt.datetime
    finished_at: dt.datetime
    outcomes: list[SyncOutcome] = field(default_factory=list)
    backlog: int = 0

    @property
    def failed(self) -> list[SyncOutcome]:
        return [o for o in self.outcomes if not o.ok]

    def failures_by_class(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for o in self.failed:
            out[o.error_class or "unknown"][o.venue] += 1
        return {k: dict(v) for k, v in out.items()}

    def lines(self) -> list[str]:
        seconds = (self.finished_at - self.started_at).total_seconds()
        lines = [f"cycle: {len(self.outcomes)} connection(s) polled in {seconds:.1f}s, "
                 f"{len(self.outcomes) - len(self.failed)} ok, {len(self.failed)} failed, backlog {self.backlog}"]
        for o in self.outcomes:
            state = "ok" if o.ok else f"FAILED ({o.error_class}: {o.message})"
            lines.append(f"connection {o.connection_id} {o.venue}: {state}, {o.records} new record(s)")
        return lines


def run_cycle(app: Appliance, *, only: int | None = None, force: bool = False) -> CycleResult:
    """One polling cycle of this node: claim due connections and sync them on a pool of
    ``poller.workers`` threads, claiming more whenever the queue runs low (a slow account holds up
    one worker, not a whole batch)."""
    started = utcnow()
    workers = app.settings.poller.workers
    if only is None:
        release_stale_leases(app)
    outcomes: list[SyncOutcome] = []
    # Connections already polled in this cycle. Every outcome moves next_poll_at ahead, so one is
    # claimed again only through a bug or a clock jump; it is then given back, not polled twice.
    seen: set[int] = set()
    finished: queue.SimpleQueue[SyncOutcome] = queue.SimpleQueue()

    def work(connection_id: int) -> None:
        outcome = SyncOutcome(connection_id, "?", False, "internal", "the poll thread stopped")
        try:
            outcome = _sync_isolated(app, connection_id)
        finally:  # always answer, or the loop below would wait for this connection for ever
            finished.put(outcome)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll") as pool:
        running = 0
        more = True
        while True:
            if more and running <= workers:
                ids = claim_due(app, limit=2 * workers - running, only=only, force=force)
                fresh = [cid for cid in ids if cid not in seen]
                for cid in ids:
                    if cid in seen:
                        _release(app, cid, interval_for_id(app, cid))
                seen.update(fresh)
                for cid in fresh:
                    pool.submit(work, cid)
                running += len(fresh)
                more = bool(fresh) and only is None
            if not running:
                break
            outcomes.append(finished.get())
            running -= 1
    result = CycleResult(started, utcnow(), outcomes, backlog(app))
    _record_cycle(app, result)
    return result


def _sync_isolated(app: Appliance, connection_id: int) -> SyncOutcome:
    """sync_connection, with whatever escapes it (its bookkeeping failed too) turned into an outcome:
    one connection never ends the cycle of the others."""
    try:
        return sync_connection(app, connection_id)
    except Exception as exc:  # noqa: BLE001 - reported as this connection's outcome
        log.warning("sync of connection %s could not record its outcome: %s", connection_id, type(exc).__name__)
        error_class = "database" if isinstance(exc, DBAPIError) else "internal"
        return SyncOutcome(connection_id, "?", False, error_class, type(exc).__name__)


def interval_for_id(app: Appliance, connection_id: int) -> dt.timedelta:
    with app.store.read() as session:
        connection = session.get(Connection, connection_id)
        return interval_for(app, connection) if connection is not None else dt.timedelta(
            minutes=app.settings.poller.interval_minutes)


def _record_cycle(app: Appliance, result: CycleResult) -> None:
    with _write(app) as session:
        session.add(PollCycle(
            node=app.node_id, started_at=result.started_at, finished_at=result.finished_at,
            duration_seconds=(result.finished_at - result.started_at).total_seconds(), polled=len(result.outcomes),
            succeeded=len(result.outcomes) - len(result.failed), failures=result.failures_by_class(),
            backlog=result.backlog))


def request_sync(session: Session, connection_id: int) -> Connection:
    """"Sync now": make the connection due at once; the next scheduler tick polls it."""
    connection = session.get(Connection, connection_id)
    if connection is None:
        from appliance.errors import NotFound

        raise NotFound("not found")
    if connection.status not in POLLED:
        from appliance.errors import Conflict

        raise Conflict(f"a {connection.status} connection is not polled")
    connection.next_poll_at = utcnow()
    session.flush()
    return connection


# -- status ------------------------------------------------------------------------------------------

@dataclass
class StatusReport:
    last_cycles: list[PollCycle]
    by_status: dict[str, int]
    backlog: int

    def lines(self) -> list[str]:
        lines = ["connections: " + (", ".join(f"{k} {v}" for k, v in sorted(self.by_status.items())) or "none"),
                 f"backlog (due now): {self.backlog}"]
        if not self.last_cycles:
            lines.append("last cycle: none yet")
        for cycle in self.last_cycles:
            failures = "; ".join(f"{cls}: " + ", ".join(f"{v} {n}" for v, n in sorted(venues.items()))
                                 for cls, venues in sorted((cycle.failures or {}).items())) or "none"
            lines.append(f"cycle {cycle.started_at.isoformat(timespec='seconds')} on {cycle.node}: "
                         f"{cycle.polled} polled, {cycle.succeeded} ok, {cycle.duration_seconds or 0:.1f}s, "
                         f"failures {failures}")
        return lines


def status_report(app: Appliance, *, cycles: int = 5) -> StatusReport:
    with app.store.read() as session:
        last = list(session.execute(select(PollCycle).order_by(PollCycle.id.desc()).limit(cycles)).scalars())
        by_status = dict(session.execute(select(Connection.status, func.count()).group_by(Connection.status)).all())
        # Detached with their values loaded: the read session's rollback would expire them, and the CLI
        # and the System page read them after it ends.
        session.expunge_all()
    return StatusReport(last, {str(k): int(v) for k, v in by_status.items()}, backlog(app))
