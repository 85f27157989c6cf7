"""Writes of a sync: pages of records with their cursor and coverage, and balance and position
observations.

A page with records is stored together with the stream's cursor in one transaction (idempotent on
(connection, stream, venue id)), so a crash at any instant loses nothing and duplicates nothing. A connection
that replaced an earlier key to the same account (re-onboarding) reads the account's history again: a record
the earlier connection already stored is not stored a second time (reports, rules and certifications would
count it twice); the history stays with the connection that first read it. A record
already stored is never rewritten, with one exception: a pending transfer takes the outcome the venue reports
later (completed, failed or cancelled), once. Pages
without records, and the poll's observations, are held (:class:`Held`) and written with the next commit.
Balances and prediction positions are observations with validity intervals: a new row only when a
value changes; ``observed_until`` moves forward on every successful poll. Nothing is ever deleted.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from appliance.services import reconcile
from appliance.services.connections import account_lineage
from appliance.store.base import utcnow
from appliance.store.models import (
    BalanceSnapshot,
    CoverageInterval,
    PredictionPosition,
    SyncCursor,
    Transaction,
    TransactionValue,
)
from appliance.venues.base import VENUE_LIMITATION, Balance, Page, PositionRecord, TxRecord, TxStatus

log = logging.getLogger(__name__)

PROGRESS_EVERY = 2.0  # seconds: how often a first sync's progress is committed while it finds nothing


@dataclass
class Held:
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
        notes = page.notes or {}
        held_for = time.monotonic() - self.renewed
        return (bool(page.records) or notes.get("orphaned_from_block") is not None
                or notes.get("coverage_gap") is not None
                # a long walk's progress reaches the employee page every few seconds, not once at the end
                or (page.progress is not None and held_for > PROGRESS_EVERY)
                or held_for > self.lease_seconds / 3)

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
    progress = _progress(page)
    if row is None:
        row = SyncCursor(connection_id=connection_id, stream=stream, cursor=page.cursor, progress=progress)
        session.add(row)
        if coverage is not None:
            coverage.cursors[stream] = row
    else:
        row.cursor = page.cursor
        if progress != row.progress:
            row.progress = progress
    gap = (page.notes or {}).get("coverage_gap")
    if gap is not None:
        record_standing_gap(session, connection_id, stream, gap, coverage)
    if page.complete_until is not None:
        extend_coverage(session, connection_id, stream, page, inserted, coverage)
    if flush:
        session.flush()
    return inserted


def insert_records(session: Session, connection_id: int, stream: str, records: Sequence[TxRecord], *,
                   provenance: str | None = None, statement_import_id: int | None = None) -> int:
    """Idempotent on (connection, stream, venue id): records already stored are skipped, never rewritten —
    except a stored *pending* transfer, which takes the outcome the venue now reports (and the time the venue
    gives it then), once. A final status is never changed again.

    A chain transfer whose stored row was orphaned by a reorg and that reappears in another block
    is stored as a second row (its id suffixed with the new block's hash); the orphaned row stays.
    ``provenance``/``statement_import_id``: for records imported from a statement (default: api or chain).
    """
    if not records:
        return 0
    wanted = {r.venue_tx_id[:200] for r in records} | {_reorg_id(r) for r in records if r.block_hash}
    existing: dict[str, _Stored] = {}
    id_list = list(wanted)
    lineage = account_lineage(session, connection_id)
    for start in range(0, len(id_list), 500):
        for row_id, venue_tx_id, orphaned, block_hash, status in session.execute(select(
                Transaction.id, Transaction.venue_tx_id, Transaction.orphaned, Transaction.block_hash,
                Transaction.status).where(
                Transaction.connection_id.in_(lineage), Transaction.stream == stream,
                Transaction.venue_tx_id.in_(id_list[start:start + 500]))):
            existing[venue_tx_id] = _Stored(row_id, orphaned, block_hash, status)
    added = 0
    for r in records:
        venue_tx_id = r.venue_tx_id[:200]
        stored = existing.get(venue_tx_id)
        if stored is not None and stored.orphaned and r.block_hash and stored.block_hash != r.block_hash:
            venue_tx_id = _reorg_id(r)
            stored = existing.get(venue_tx_id)
        if stored is not None:
            if stored.status != r.status:
                _settle(session, connection_id, stream, venue_tx_id, stored, r)
            continue
        existing[venue_tx_id] = _Stored(None, False, r.block_hash, r.status)
        session.add(Transaction(
            connection_id=connection_id, stream=stream, venue_tx_id=venue_tx_id, kind=r.kind,
            occurred_at=r.occurred_at, asset=r.asset[:64], amount=r.amount, market=r.market[:100],
            quote_asset=r.quote_asset, quote_amount=r.quote_amount, price=r.price, fee_asset=r.fee_asset,
            fee_amount=r.fee_amount,
            provenance=provenance or ("chain" if r.block_number is not None else "api"),
            statement_import_id=statement_import_id, status=r.status,
            block_number=r.block_number, block_hash=r.block_hash, raw=dict(r.raw) if r.raw else None))
        added += 1
    session.flush()
    return added


@dataclass
class _Stored:
    id: int | None  # None: added by this call, not yet flushed
    orphaned: bool
    block_hash: str | None
    status: str


def _settle(session: Session, connection_id: int, stream: str, venue_tx_id: str, stored: _Stored,
            record: TxRecord) -> None:
    """A stored transfer the venue now reports with another status: a pending one takes the outcome (and the
    time the venue gives the outcome); a final one keeps its first outcome (venues do not reopen records; if
    one does, the log says so and nothing is rewritten)."""
    if stored.status != TxStatus.PENDING or stored.id is None:
        if stored.id is not None:
            log.warning("connection %s %s %s: the venue now reports %s for a record stored as %s; kept as stored",
                        connection_id, stream, venue_tx_id, record.status, stored.status)
        return
    session.execute(update(Transaction).where(Transaction.id == stored.id).values(
        status=record.status, status_changed_at=utcnow(), occurred_at=record.occurred_at, amount=record.amount,
        fee_asset=record.fee_asset, fee_amount=record.fee_amount, raw=dict(record.raw) if record.raw else None))
    # Its value (valuation) was for the pending row's time and amount: the pricing job values it again.
    session.execute(delete(TransactionValue).where(TransactionValue.transaction_id == stored.id))
    stored.status = record.status


def _progress(page: Page) -> dict[str, Any] | None:
    if page.done or page.progress is None:
        return None
    done, total = page.progress
    return {"done": int(done), "total": int(total), "at": utcnow().isoformat()}


def record_standing_gap(session: Session, connection_id: int, stream: str, note: Any,
                        coverage: Coverage | None = None) -> None:
    """Open (or refresh) the standing gap an adapter declared for ``stream`` (``Page.notes["coverage_gap"]``):
    one open gap per (stream, reason); its detail follows the latest words."""
    if not isinstance(note, dict) or not note.get("reason"):
        return
    reason, detail = str(note["reason"])[:64], str(note.get("detail") or "")[:4000]
    start = _as_time(note["start"]) if note.get("start") else None
    end = _as_time(note["end"]) if note.get("end") else None
    coverage = coverage or Coverage(session, connection_id)
    gap = next((g for g in coverage.gaps.get(stream, ()) if g.reason == reason and g.closed_at is None), None)
    if gap is None:
        complete = coverage.complete.get(stream)
        start = start or (complete.start_at if complete is not None else utcnow())
        # What an earlier gap of this kind covered was filled (a statement import, the permission added for a
        # while): the limitation stands again only after that.
        filled = session.execute(select(func.max(CoverageInterval.end_at)).where(
            CoverageInterval.connection_id == connection_id, CoverageInterval.stream == stream,
            CoverageInterval.kind == "gap", CoverageInterval.reason == reason,
            CoverageInterval.closed_at.is_not(None))).scalar_one_or_none()
        if filled is not None and filled > start:
            start = filled
        if end is not None and start >= end:
            return
        gap = CoverageInterval(connection_id=connection_id, stream=stream, kind="gap", reason=reason,
                               start_at=start, end_at=end, detail=detail)
        session.add(gap)
        coverage.gaps[stream].append(gap)
        return
    gap.detail = detail
    if start is not None and start < gap.start_at:
        gap.start_at = start
    if end is not None:
        gap.end_at = end


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
    start = page.notes.get("complete_from") if page.notes else None
    if start and _as_time(start) < complete.start_at:
        # A walk that goes back in time (a first sync reads the newest windows first) extends the start.
        complete.start_at = _as_time(start)
    declared = (page.notes or {}).get("coverage_gap") or {}
    for gap in coverage.gaps.get(stream, ()):
        if gap.closed_at is not None or until < gap.start_at:
            continue
        # A venue limitation ends when the stream reads again (the key gained the permission): that walk
        # started from the beginning, so what the gap covered is read now.
        lifted = gap.reason == VENUE_LIMITATION and declared.get("reason") != VENUE_LIMITATION
        if reconcile.closes(gap) or lifted:
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

    notes = {k: v for k, v in (page.notes or {}).items()
             if k not in ("orphaned_from_block", "coverage_gap", "complete_from", "deferred")}
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
