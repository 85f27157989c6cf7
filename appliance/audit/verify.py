"""`vigatra audit verify`: walk the whole chain in the database and say where it first breaks.

The check must hold for 10M+ events in constant memory at >= 250k events/s (issue 5 benchmark), and
it must catch what the chain alone cannot — a truncated tail or a consistently rewritten chain — by
holding every signed checkpoint against the events.

- Events are read in keyset pages as raw driver tuples (no ORM objects, no datetime parsing: the
  timestamp comes as text and is reformatted by slicing on SQLite, by ``to_char`` on PostgreSQL),
  and hashed by ``chain.event_hash``, the one canonical form the writer uses too. Whenever a raw row
  disagrees with its stored hash it is re-read through the model's types and hashed again, so reading
  the timestamp as text can never invent a break nor hide one.
- Large chains are split into id ranges verified by worker processes (spawned, each with its own
  connection); the parent stitches the ranges by their first ``prev_hash`` and last hash.
- Purged events are skipped: the chain starts after ``purged_through_id``, anchored by the hash
  of the last removed event that the newest signed purge checkpoint records.
- Checkpoints are walked in id order: signature (current key, or a key a ``rekey`` checkpoint
  retired, only for checkpoints before that rekey), the ``prev_checkpoint`` digest chain, and each
  checkpoint's claim against the event at its ``last_event_id``.

Limits (documented for the operator): someone who can both rewrite events and delete the newest
checkpoints cannot be caught from the database alone; the exported manifests and their signatures
are then the evidence (on SQLite the owner can drop the append-only triggers).
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select, text
from sqlalchemy.orm import Session

from appliance.audit.chain import COLUMNS, GENESIS, event_hash, format_timestamp, stamp_from_sqlite
from appliance.audit.checkpoints import (
    CheckpointFields,
    checkpoint_digest,
    detail_of,
    verify_signature,
)
from appliance.audit.export import PG_STAMP_SQL
from appliance.crypto import public_key_id
from appliance.errors import IntegrityFailure
from appliance.store.models import AuditChainHead, AuditCheckpoint, AuditEvent
from appliance.store.session import Store, make_engine

log = logging.getLogger(__name__)

HEAD_ID = 1
PAGE_SIZE = 20000
CHECKPOINT_PAGE = 500
# Below this many events one process is faster than starting workers.
PARALLEL_MIN_EVENTS = 1_000_000
CHUNK_EVENTS = 500_000

class VerifyFailed(IntegrityFailure):
    """The audit trail does not verify; ``event_id`` is the first bad event when there is one."""

    def __init__(self, message: str, *, event_id: int | None = None) -> None:
        super().__init__(message)
        self.event_id = event_id


# -------------------------------------------------------------------------------------------------
# Walking the events


def _select_sql(dialect: str) -> str:
    """Raw page query: COLUMNS + hash, the timestamp as text. Column names are constants."""
    stamp = "timestamp" if dialect == "sqlite" else PG_STAMP_SQL.replace(":", "\\:")  # text(): ":" starts a bind
    names = ", ".join(stamp if name == "timestamp" else name for name in (*COLUMNS, "hash"))
    return (f"SELECT {names} FROM audit_events WHERE id > :after AND id <= :hi "  # noqa: S608 - constants only
            "ORDER BY id LIMIT :limit")


_TYPED = select(*[getattr(AuditEvent, name) for name in COLUMNS], AuditEvent.hash)


def _typed_row(conn: Connection, event_id: int) -> tuple[Any, ...]:
    return tuple(conn.execute(_TYPED.where(AuditEvent.id == event_id)).one())


def _typed_row_matches(conn: Connection, event_id: int) -> bool:
    """Re-read one event through the model's types (the timestamp as a datetime) and hash it."""
    try:
        row = _typed_row(conn, event_id)
        return event_hash(list(row[:-1])) == row[-1]
    except (ValueError, TypeError):  # a value the model cannot even read back: certainly not what was hashed
        return False


def iter_raw_events(conn: Connection, after: int, through: int, *, page: int = PAGE_SIZE
                    ) -> Iterator[tuple[Any, ...]]:
    """Events after..through in id order as plain tuples (COLUMNS + hash), the timestamp as chain text.

    Keyset pages, no ORM objects, no datetime objects: what verification and export stream.
    """
    sqlite = conn.dialect.name == "sqlite"
    sql = text(_select_sql(conn.dialect.name))
    while True:
        rows = conn.execute(sql, {"after": after, "hi": through, "limit": page}).all()
        for row in rows:
            ts = row[1]
            if not sqlite:
                yield tuple(row)
            elif (text_stamp := stamp_from_sqlite(ts)) is not None:
                yield (row[0], text_stamp, *row[2:])
            else:  # not what SQLAlchemy writes: let the model's type read it
                try:
                    stamp = format_timestamp(_typed_row(conn, row[0])[1])
                except (ValueError, TypeError, AttributeError):
                    stamp = str(ts)
                yield (row[0], stamp, *row[2:])
        if len(rows) < page:
            return
        after = rows[-1][0]


@dataclass(frozen=True)
class _Chunk:
    """What one walk over ids [lo, hi] found (picklable: workers return it)."""

    lo: int
    hi: int
    count: int = 0
    first_prev: str | None = None
    last_id: int | None = None
    last_hash: str | None = None
    break_id: int | None = None
    break_reason: str = ""


def _walk(conn: Connection, lo: int, hi: int, expected_prev: str | None, page: int, *, tail: bool = False
          ) -> _Chunk:
    """Verify events lo..hi (gap-free ids, prev links, hashes); stop at the first break.

    ``tail``: ``hi`` is the newest event the chain head names, so missing rows at the end are a cut tail.
    """
    expect, last = lo, expected_prev
    first_prev: str | None = None
    count = 0

    def broken(event_id: int, reason: str) -> _Chunk:
        return _Chunk(lo, hi, count, first_prev, expect - 1 if count else None, last, event_id, reason)

    for (i, ts, at, uid, ak, ac, rt, rid, ip, rq, me, pa, st, ua, oc, de, pr, h) in iter_raw_events(
            conn, lo - 1, hi, page=page):
        if i != expect:
            missing = f"events {expect}..{i - 1} are" if i - 1 > expect else f"event {expect} is"
            return broken(expect, f"{missing} missing (deleted rows; the next event is {i})")
        if last is not None and pr != last:
            return broken(i, f"prev_hash does not match the hash of event {i - 1} "
                             "(events edited, reordered or inserted before it)")
        if first_prev is None:
            first_prev = pr
        if (event_hash((i, ts, at, uid, ak, ac, rt, rid, ip, rq, me, pa, st, ua, oc, de, pr)) != h
                and not _typed_row_matches(conn, i)):
            return broken(i, "the event's contents do not match its hash (a field was edited)")
        last = h
        expect = i + 1
        count += 1
    if expect <= hi:
        if tail:
            return broken(expect, f"truncated: the chain head names event {hi} but the chain ends at {expect - 1}")
        return broken(expect, f"event {expect} is missing (deleted rows)")
    return _Chunk(lo, hi, count, first_prev, hi if count else None, last)


def _chunk_worker(url: str, lo: int, hi: int, page: int, tail: bool) -> _Chunk:
    """Worker process entry: its own engine, one range."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return _walk(conn, lo, hi, None, page, tail=tail)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Walk:
    count: int
    last_id: int
    last_hash: str


def walk_events(store: Store, start_id: int, expected_prev: str, *, through: int | None = None,
                workers: int | None = None, page: int = PAGE_SIZE, chunk_events: int = CHUNK_EVENTS,
                parallel_min: int = PARALLEL_MIN_EVENTS) -> Walk:
    """Verify the events ``start_id..through`` (default: the newest), chained from ``expected_prev``.

    Raises VerifyFailed naming the first bad event id. ``workers``: processes to use for large
    chains (default: the CPU count; 1 = in this process only).
    """
    if through is None:
        with store.engine.connect() as conn:
            found = conn.execute(select(func.max(AuditEvent.id)).where(AuditEvent.id >= start_id)).scalar()
        through = int(found) if found is not None else start_id - 1
    if through < start_id:
        return Walk(0, start_id - 1, expected_prev)
    last = through
    total = last - start_id + 1
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if workers <= 1 or total < parallel_min or store.engine.url.database in (None, "", ":memory:"):
        with store.engine.connect() as conn:
            chunks: Iterator[_Chunk] = iter([_walk(conn, start_id, last, expected_prev, page, tail=True)])
            return _stitch(chunks, start_id, expected_prev)
    url = store.engine.url.render_as_string(hide_password=False)
    bounds = [(lo, min(lo + chunk_events - 1, last)) for lo in range(start_id, last + 1, chunk_events)]
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=min(workers, len(bounds)), mp_context=context) as pool:
            futures: list[Future[_Chunk]] = [pool.submit(_chunk_worker, url, lo, hi, page, hi == last)
                                             for lo, hi in bounds]
            try:
                return _stitch((f.result() for f in futures), start_id, expected_prev)
            finally:
                for future in futures:
                    future.cancel()
    except BrokenProcessPool:
        # e.g. embedded in a program whose __main__ cannot be re-imported by a spawned worker
        log.warning("audit verification workers could not start; verifying in one process")
        with store.engine.connect() as conn:
            return _stitch(iter([_walk(conn, start_id, last, expected_prev, page, tail=True)]), start_id,
                           expected_prev)


def _stitch(chunks: Iterator[_Chunk], start_id: int, expected_prev: str) -> Walk:
    last_hash, last_id, count = expected_prev, start_id - 1, 0
    for chunk in chunks:
        if chunk.count and chunk.first_prev != last_hash and chunk.break_id != chunk.lo:
            raise VerifyFailed(f"audit chain broken at event {chunk.lo}: prev_hash does not match the hash of "
                               f"event {chunk.lo - 1} (events edited, reordered or inserted before it)",
                               event_id=chunk.lo)
        if chunk.break_id is not None:
            raise VerifyFailed(f"audit chain broken at event {chunk.break_id}: {chunk.break_reason}",
                               event_id=chunk.break_id)
        count += chunk.count
        if chunk.count:
            last_hash, last_id = chunk.last_hash or last_hash, chunk.hi
    return Walk(count, last_id, last_hash)


# -------------------------------------------------------------------------------------------------
# Keys and checkpoints


class KeyRing:
    """Which public key may have signed which checkpoints.

    The current key signs checkpoints from the newest rekey on; each rekey checkpoint (signed by
    the key that replaced it) names the key before it, trusted for the checkpoints before it.
    """

    def __init__(self, current_pem: str) -> None:
        self.current_pem = current_pem
        self.current_id = public_key_id(current_pem)
        # (key id, pem, first checkpoint id it may sign, first id it may no longer sign)
        self.spans: list[tuple[str, str, int, float]] = [(self.current_id, current_pem, 0, float("inf"))]

    @classmethod
    def load(cls, session: Session, appliance_id: str, current_pem: str) -> KeyRing:
        ring = cls(current_pem)
        rows = session.execute(select(AuditCheckpoint).where(AuditCheckpoint.kind == "rekey")
                               .order_by(AuditCheckpoint.id.desc())).scalars().all()
        for row in rows:
            pem = ring.key_for(int(row.id), row.key_id)
            if pem is None:
                raise VerifyFailed(f"rekey checkpoint #{row.id} is signed with key {row.key_id}, which is neither "
                                   f"the appliance's signing key ({ring.current_id}) nor one it retired")
            if not verify_signature(row, appliance_id, pem):
                raise VerifyFailed(f"rekey checkpoint #{row.id}: the signature does not verify")
            try:
                detail = detail_of(row)
                old_pem = str(detail["old_public_key"])
                old_id = public_key_id(old_pem)
            except (ValueError, KeyError):
                raise VerifyFailed(f"rekey checkpoint #{row.id} does not name the retired key") from None
            key_id, key_pem, _start, end = ring.spans[-1]
            ring.spans[-1] = (key_id, key_pem, int(row.id), end)
            ring.spans.append((old_id, old_pem, 0, int(row.id)))
        return ring

    def key_for(self, checkpoint_id: int, key_id: str) -> str | None:
        for span_id, pem, start, end in self.spans:
            if span_id == key_id and start <= checkpoint_id < end:
                return pem
        return None


@dataclass(frozen=True)
class ChainReport:
    events: int
    first_id: int | None
    last_id: int
    last_hash: str
    purged_through_id: int
    checkpoints: int
    newest_checkpoint_at: dt.datetime | None
    newest_checkpoint_event_id: int | None
    key_id: str
    notes: tuple[str, ...] = field(default=())
    # Events after the newest signed checkpoint: held by the hash chain alone, which whoever can write the
    # database can recompute, so rewriting them is detectable only from the next checkpoint on.
    unanchored: int = 0

    def warnings(self) -> list[str]:
        if not self.unanchored:
            return []
        since = ("no checkpoint has been signed yet" if self.newest_checkpoint_at is None else
                 f"the newest signed checkpoint ({format_timestamp(self.newest_checkpoint_at)}) names event "
                 f"{self.newest_checkpoint_event_id}")
        return [f"{self.unanchored} event(s) are not anchored by a signature: {since}. Until the next checkpoint "
                "(at most 5 minutes while the appliance runs, and at every clean shutdown) someone who can write "
                "the database could rewrite them undetected; `vigatra audit checkpoint` signs them now"]

    def summary(self) -> str:
        newest = ("no checkpoint yet" if self.newest_checkpoint_at is None else
                  f"newest {format_timestamp(self.newest_checkpoint_at)} "
                  f"through event {self.newest_checkpoint_event_id}")
        purged = f", events through {self.purged_through_id} purged" if self.purged_through_id else ""
        return (f"audit trail valid: {self.events} events, {self.checkpoints} checkpoints ({newest}), "
                f"last id {self.last_id}{purged}; signing key {self.key_id}")


def _anchor(session: Session, ring: KeyRing, appliance_id: str, purged_through: int) -> str:
    """The hash the remaining chain starts from: GENESIS, or the newest purge checkpoint's record."""
    row = session.execute(select(AuditCheckpoint).where(AuditCheckpoint.kind == "purge")
                          .order_by(AuditCheckpoint.id.desc()).limit(1)).scalar_one_or_none()
    if row is None:
        if purged_through:
            raise VerifyFailed(f"events 1..{purged_through} were removed without a signed purge record",
                               event_id=1)
        return GENESIS
    pem = ring.key_for(int(row.id), row.key_id)
    if pem is None or not verify_signature(row, appliance_id, pem):
        raise VerifyFailed(f"purge checkpoint #{row.id}: the signature does not verify")
    try:
        detail = detail_of(row)
        through, anchor = int(detail["removed_through_id"]), str(detail["last_removed_hash"])
    except (ValueError, KeyError, TypeError):
        raise VerifyFailed(f"purge checkpoint #{row.id} does not record the removed range") from None
    if through != purged_through:
        raise VerifyFailed(f"the chain head says events through {purged_through} were purged, but the newest "
                           f"signed purge record (checkpoint #{row.id}) says through {through}",
                           event_id=min(through, purged_through) + 1)
    return anchor


def _checkpoint_rows(session: Session, through_id: int) -> Iterator[AuditCheckpoint]:
    after = 0
    while True:
        rows = session.execute(select(AuditCheckpoint).where(AuditCheckpoint.id > after,
                                                              AuditCheckpoint.id <= through_id)
                               .order_by(AuditCheckpoint.id).limit(CHECKPOINT_PAGE)).scalars().all()
        yield from rows
        if len(rows) < CHECKPOINT_PAGE:
            return
        after = int(rows[-1].id)
        session.expunge_all()


class _ClaimChecker:
    """Holds checkpoint claims (event id -> hash) against the events, in batches."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.pending: list[tuple[int, str, int]] = []
        self.last_good = 0

    def add(self, event_id: int, claimed: str, checkpoint_id: int) -> None:
        self.pending.append((event_id, claimed, checkpoint_id))
        if len(self.pending) >= CHECKPOINT_PAGE:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        ids = sorted({p[0] for p in self.pending})
        rows = self.session.execute(select(AuditEvent.id, AuditEvent.hash).where(AuditEvent.id.in_(ids))).all()
        stored = {int(row[0]): str(row[1]) for row in rows}
        for event_id, claimed, checkpoint_id in self.pending:
            if stored.get(event_id) != claimed:
                raise VerifyFailed(
                    f"audit chain rewritten at or before event {event_id} (after event {self.last_good}): "
                    f"signed checkpoint #{checkpoint_id} recorded a different hash for event {event_id}",
                    event_id=event_id)
            self.last_good = max(self.last_good, event_id)
        self.pending.clear()


def _check_checkpoints(session: Session, ring: KeyRing, appliance_id: str, walk: Walk, purged_through: int,
                       anchor: str, through_id: int) -> tuple[int, AuditCheckpoint | None]:
    claims = _ClaimChecker(session)
    claims.last_good = purged_through
    prev_digest: str | None = None
    prev_id = 0
    prev_last = 0
    purged = 0
    count = 0
    newest: AuditCheckpoint | None = None
    for row in _checkpoint_rows(session, through_id):
        cid = int(row.id)
        pem = ring.key_for(cid, row.key_id)
        if pem is None:
            raise VerifyFailed(f"checkpoint #{cid} is signed with key {row.key_id}, which is neither the appliance's "
                               f"signing key ({ring.current_id}) nor one it retired")
        if not verify_signature(row, appliance_id, pem):
            raise VerifyFailed(f"checkpoint #{cid}: the signature does not verify (its fields were altered, or it "
                               f"belongs to another appliance than {appliance_id!r})")
        try:
            detail = detail_of(row)
        except ValueError as exc:
            raise VerifyFailed(f"checkpoint #{cid}: {exc}") from None
        if detail.get("prev_checkpoint") != prev_digest:
            raise VerifyFailed(f"checkpoint #{cid} does not follow checkpoint #{prev_id}: a checkpoint between them "
                               "was removed or altered")
        last_event_id = int(row.last_event_id)
        if last_event_id < prev_last:
            raise VerifyFailed(f"checkpoint #{cid} covers fewer events than checkpoint #{prev_id}")
        if row.kind == "purge":
            purged = int(detail.get("removed_through_id", purged))
        if int(row.event_count) != last_event_id - purged:
            raise VerifyFailed(f"checkpoint #{cid}: event count {row.event_count} does not match its range")
        if last_event_id > walk.last_id:
            claims.flush()
            raise VerifyFailed(
                f"audit chain truncated: signed checkpoint #{cid} ({row.kind}, {format_timestamp(row.created_at)}) "
                f"covers events through {last_event_id}, but the chain ends at {walk.last_id}",
                event_id=walk.last_id + 1)
        if last_event_id > purged_through:
            claims.add(last_event_id, row.last_hash, cid)
        elif last_event_id == purged_through and row.last_hash != anchor:
            raise VerifyFailed(f"checkpoint #{cid} disagrees with the purge anchor at event {last_event_id}",
                               event_id=last_event_id)
        prev_digest = checkpoint_digest(CheckpointFields.of(row, appliance_id), row.signature)
        prev_id, prev_last = cid, last_event_id
        count += 1
        newest = row
    claims.flush()
    if purged != purged_through:
        raise VerifyFailed(f"the chain head says events through {purged_through} were purged, the signed purge "
                           f"records say through {purged}", event_id=min(purged, purged_through) + 1)
    return count, newest


def verify_database(store: Store, *, appliance_id: str, public_key_pem: str, workers: int | None = None,
                    page: int = PAGE_SIZE, chunk_events: int = CHUNK_EVENTS,
                    parallel_min: int = PARALLEL_MIN_EVENTS) -> ChainReport:
    """Verify the events, the chain head and every checkpoint; raise VerifyFailed at the first problem.

    Safe on a live appliance: it verifies what existed when it started — the checkpoints up to the
    newest one then, and the events up to the chain head read after them (a checkpoint never names
    an event beyond the head that followed it) — and ignores what is appended meanwhile.
    """
    with store.read() as session:
        newest_checkpoint = int(session.execute(select(func.max(AuditCheckpoint.id))).scalar() or 0)
        head = session.execute(select(AuditChainHead).where(AuditChainHead.id == HEAD_ID)).scalar_one()
        head_id, head_hash, purged_through = int(head.last_id), head.last_hash, int(head.purged_through_id)
        ring = KeyRing.load(session, appliance_id, public_key_pem)
        anchor = _anchor(session, ring, appliance_id, purged_through)
    walk = walk_events(store, purged_through + 1, anchor, through=head_id, workers=workers, page=page,
                       chunk_events=chunk_events, parallel_min=parallel_min)
    with store.read() as session:
        count, newest = _check_checkpoints(session, ring, appliance_id, walk, purged_through, anchor,
                                           newest_checkpoint)
        newest_at = newest.created_at if newest is not None else None
        newest_event = int(newest.last_event_id) if newest is not None else None
    if walk.last_id != head_id or walk.last_hash != head_hash:
        raise VerifyFailed(f"the chain head (event {head_id}) does not match the newest event ({walk.last_id}): "
                           "the head was edited", event_id=min(head_id, walk.last_id) + 1)
    anchored_through = newest_event if newest_event is not None else purged_through
    return ChainReport(events=walk.count, first_id=purged_through + 1 if walk.count else None, last_id=walk.last_id,
                       last_hash=walk.last_hash, purged_through_id=purged_through, checkpoints=count,
                       newest_checkpoint_at=newest_at, newest_checkpoint_event_id=newest_event,
                       key_id=ring.current_id, unanchored=max(0, walk.last_id - anchored_through))
