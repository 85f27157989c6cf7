"""The sync engine: which connections are due, polling one, recording outcomes, health and coverage.

- Claiming: each node leases due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; a conditional
  update under SQLite's single writer). A lease expires after ``poller.lease_seconds``, so a dead
  node's connections are taken over; it is renewed after every page, so no connection is polled by
  two nodes at once.
- Writing: venue calls happen outside transactions. Each page of a stream is stored together with
  the stream's cursor in one transaction (idempotent on (connection, stream, venue id)), so a crash
  at any instant loses nothing and duplicates nothing. Balances and prediction positions are
  observations with validity intervals: a new row only when a value changes; ``observed_until``
  moves forward on every successful poll. Nothing is ever deleted by a sync.
- Health: active / degraded (transient failures) / broken (authentication or permission failure, or
  too many failures) / reonboarding_required (broken with ``require_reonboarding_after_break``, or a key
  that gained dangerous permissions). An authentication failure turns the connection broken in the
  same poll and raises an alert.
- Coverage: per stream, one ``complete`` interval that grows with each successful page, and ``gap``
  intervals (with the reason) opened by a failed poll and closed when a later poll fills them.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_, select, update
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
from appliance.venues.base import Balance, Credentials, Page, PositionRecord, TxRecord, VenueAdapter, WalletAdapter

log = logging.getLogger(__name__)

POLLED = ("pending", "active", "degraded", "broken", "reonboarding_required")
RED = ("broken", "reonboarding_required")


# -- claiming -------------------------------------------------------------------------------------

def claim_due(app: Appliance, *, limit: int, only: int | None = None, force: bool = False) -> list[int]:
    """Lease up to ``limit`` due connections for this node; returns their ids."""
    now = utcnow()
    lease_until = now + dt.timedelta(seconds=app.settings.poller.lease_seconds)
    with app.store.unit_of_work() as session:
        stmt = select(Connection.id).where(
            Connection.status.in_(POLLED),
            or_(Connection.lease_expires_at.is_(None), Connection.lease_expires_at < now))
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


def _renew_lease(session: Session, app: Appliance, connection_id: int) -> bool:
    until = utcnow() + dt.timedelta(seconds=app.settings.poller.lease_seconds)
    result = session.execute(update(Connection).where(
        Connection.id == connection_id, Connection.lease_owner == app.node_id).values(lease_expires_at=until))
    return bool(getattr(result, "rowcount", 0))


def backlog(app: Appliance) -> int:
    now = utcnow()
    with app.store.read() as session:
        return int(session.execute(select(func.count()).select_from(Connection).where(
            Connection.status.in_(POLLED),
            or_(Connection.next_poll_at.is_(None), Connection.next_poll_at <= now))).scalar_one())


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


def sync_connection(app: Appliance, connection_id: int) -> SyncOutcome:
    started_cpu = time.process_time()
    with app.store.read() as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            return SyncOutcome(connection_id, "?", False, "missing")
        venue = connection.venue
        try:
            adapter = app.venues.get(venue)
        except NotFound:  # a venue disabled in the configuration after onboarding
            return SyncOutcome(connection_id, venue, False, "disabled", f"venue {venue} is not enabled")
    outcome = SyncOutcome(connection_id, venue, True)
    try:
        subject = _subject(app, connection_id, adapter)
        if (isinstance(adapter, VenueAdapter) and _scope_due(app, connection_id)
                and not _reprobe(app, connection_id, adapter, subject)):
            outcome.ok, outcome.error_class = False, "scope_escalation"
            return outcome
        balances = adapter.fetch_balances(subject)
        with app.store.unit_of_work() as session:
            _check_lease(session, app, connection_id)
            record_balances(session, connection_id, balances, utcnow())
        for stream in adapter.streams:
            outcome.pages, outcome.records = _sync_stream(app, connection_id, adapter, subject, stream, outcome)
        positions = adapter.fetch_positions(subject)
        if positions or getattr(adapter, "kind", "") == "prediction":
            with app.store.unit_of_work() as session:
                record_positions(session, connection_id, positions, utcnow())
        _record_success(app, connection_id)
    except LeaseLost:
        outcome.ok, outcome.error_class = False, "lease_lost"
    except IntegrityFailure as exc:
        outcome.ok, outcome.error_class, outcome.message = False, "integrity", exc.message
        _release(app, connection_id)
    except VenueError as exc:
        outcome.ok, outcome.error_class, outcome.message = False, exc.error_class, exc.message
        _record_failure(app, connection_id, exc)
    except KeyProviderError as exc:
        outcome.ok, outcome.error_class, outcome.message = False, "keys", exc.message
        _release(app, connection_id)
    except Exception as exc:
        log.exception("sync of connection %s failed unexpectedly", connection_id)
        outcome.ok, outcome.error_class, outcome.message = False, "internal", type(exc).__name__
        _record_failure(app, connection_id, VenueError(venue, f"internal error ({type(exc).__name__})"))
    finally:
        outcome.cpu_ms = (time.process_time() - started_cpu) * 1000
    return outcome


def _subject(app: Appliance, connection_id: int, adapter: VenueAdapter | WalletAdapter) -> Any:
    """What the adapter is called with: the address for wallets, unsealed credentials for keys."""
    from appliance.services.keys import load_connection_credentials

    if isinstance(adapter, WalletAdapter):
        with app.store.read() as session:
            return session.execute(select(Connection.address).where(Connection.id == connection_id)).scalar_one()
    # On a value that fails authentication this commits the tamper response (broken, alert, audit)
    # and raises IntegrityFailure: never treated as empty, never retried with another key.
    return load_connection_credentials(app.store, app.keys, connection_id)


def _scope_due(app: Appliance, connection_id: int) -> bool:
    with app.store.read() as session:
        checked = session.execute(select(Connection.scope_checked_at).where(Connection.id == connection_id)
                                  ).scalar_one()
    return checked is None or checked < utcnow() - dt.timedelta(hours=app.settings.poller.scope_reprobe_hours)


def _reprobe(app: Appliance, connection_id: int, adapter: VenueAdapter, creds: Credentials) -> bool:
    """Test the stored key's scope again. A key that gained trade, transfer or withdraw permission
    raises an alert and stops being used (its sealed credentials are wiped). Returns False then."""
    scope = adapter.probe_scope(creds)
    with app.store.unit_of_work() as session:
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
                 stream: str, outcome: SyncOutcome) -> tuple[int, int]:
    pages, records = outcome.pages, outcome.records
    with app.store.read() as session:
        row = session.get(SyncCursor, (connection_id, stream))
        cursor: dict[str, Any] = dict(row.cursor) if row is not None and row.cursor else {}
    for _ in range(app.settings.poller.max_pages_per_sync):
        page = adapter.fetch_transactions(subject, stream, cursor)
        with app.store.unit_of_work() as session:
            _check_lease(session, app, connection_id)
            records += store_page(session, connection_id, stream, page)
        pages += 1
        cursor = page.cursor
        if page.done:
            break
    return pages, records


# -- writes ------------------------------------------------------------------------------------------

def store_page(session: Session, connection_id: int, stream: str, page: Page) -> int:
    """Insert the page's new records, apply reorg marks, advance the cursor and coverage: one transaction."""
    orphaned_from = page.notes.get("orphaned_from_block") if page.notes else None
    if orphaned_from is not None:
        session.execute(update(Transaction).where(
            Transaction.connection_id == connection_id, Transaction.stream == stream,
            Transaction.block_number >= int(orphaned_from), Transaction.orphaned.is_(False)).values(orphaned=True))
    inserted = insert_records(session, connection_id, stream, page.records)
    row = session.get(SyncCursor, (connection_id, stream))
    if row is None:
        session.add(SyncCursor(connection_id=connection_id, stream=stream, cursor=page.cursor))
    else:
        row.cursor = page.cursor
    if page.complete_until is not None:
        extend_coverage(session, connection_id, stream, page, inserted)
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


def extend_coverage(session: Session, connection_id: int, stream: str, page: Page, inserted: int) -> None:
    assert page.complete_until is not None
    until = page.complete_until
    complete = session.execute(select(CoverageInterval).where(
        CoverageInterval.connection_id == connection_id, CoverageInterval.stream == stream,
        CoverageInterval.kind == "complete")).scalars().first()
    if complete is None:
        earliest = min((r.occurred_at for r in page.records), default=until)
        start = page.notes.get("complete_from") if page.notes else None
        session.add(CoverageInterval(
            connection_id=connection_id, stream=stream, kind="complete",
            start_at=_as_time(start) if start else min(earliest, until), end_at=until,
            detail=_notes_text(page)))
    elif complete.end_at is None or until > complete.end_at:
        complete.end_at = until
        if page.notes:
            complete.detail = _notes_text(page)
    for gap in session.execute(select(CoverageInterval).where(
            CoverageInterval.connection_id == connection_id, CoverageInterval.stream == stream,
            CoverageInterval.kind == "gap", CoverageInterval.closed_at.is_(None))).scalars():
        if until >= gap.start_at:
            gap.end_at = until
            gap.closed_at = utcnow()


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

def _release(app: Appliance, connection_id: int) -> None:
    with app.store.unit_of_work() as session:
        session.execute(update(Connection).where(
            Connection.id == connection_id, Connection.lease_owner == app.node_id).values(
            lease_owner=None, lease_expires_at=None))


def _record_success(app: Appliance, connection_id: int) -> None:
    now = utcnow()
    with app.store.unit_of_work() as session:
        connection = session.get(Connection, connection_id, with_for_update=True)
        assert connection is not None
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


def _record_failure(app: Appliance, connection_id: int, exc: VenueError) -> None:
    now = utcnow()
    settings = app.settings.poller
    with app.store.unit_of_work() as session:
        connection = session.get(Connection, connection_id, with_for_update=True)
        if connection is None:
            return
        connection.last_attempt_at = now
        connection.consecutive_failures += 1
        connection.last_error_class = exc.error_class
        connection.last_error = exc.message[:500]
        connection.lease_owner = None
        connection.lease_expires_at = None
        reason = _gap_reason(exc)
        broke = isinstance(exc, (VenueAuthError, VenuePermissionError)) or (
            connection.consecutive_failures >= settings.failure_threshold and connection.status != "pending")
        if broke and connection.status not in RED:
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
            base = min(2 ** connection.consecutive_failures, settings.backoff_max_minutes * 2)
            delay = dt.timedelta(seconds=min(base * 30, settings.backoff_max_minutes * 60) * random.uniform(0.5, 1.5))  # noqa: S311
        connection.next_poll_at = now + delay
        _open_gaps(session, connection, reason, exc.message[:500])


def _gap_reason(exc: VenueError) -> str:
    return {"authentication": "auth_error", "permission": "permission_error", "rate_limit": "rate_limited",
            "bad_data": "bad_data", "refused": "refused"}.get(exc.error_class, "venue_down")


def _open_gaps(session: Session, connection: Connection, reason: str, detail: str) -> None:
    adapter_streams = [s for (s,) in session.execute(select(SyncCursor.stream).where(
        SyncCursor.connection_id == connection.id))] or ["all"]
    for stream in adapter_streams:
        open_gap = session.execute(select(CoverageInterval).where(
            CoverageInterval.connection_id == connection.id, CoverageInterval.stream == stream,
            CoverageInterval.kind == "gap", CoverageInterval.closed_at.is_(None))).scalars().first()
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
    """One polling cycle of this node: claim due connections in batches and sync them on a pool."""
    started = utcnow()
    outcomes: list[SyncOutcome] = []
    workers = app.settings.poller.workers
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll") as pool:
        while True:
            ids = claim_due(app, limit=workers * 4, only=only, force=force)
            if not ids:
                break
            outcomes.extend(pool.map(lambda cid: sync_connection(app, cid), ids))
            if only is not None:
                break
    result = CycleResult(started, utcnow(), outcomes, backlog(app))
    _record_cycle(app, result)
    return result


def _record_cycle(app: Appliance, result: CycleResult) -> None:
    with app.store.unit_of_work() as session:
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
    return StatusReport(last, {str(k): int(v) for k, v in by_status.items()}, backlog(app))
