"""Writing audit events: in the caller's transaction, or through the group committer.

Two write paths (STYLE.md habit 8):
- :func:`append` adds events to the caller's session, for a state change whose audit row must
  commit or roll back with it;
- :class:`GroupCommitter` is an independent writer thread for everything else — reads, denials,
  failed logins — that batches the events of concurrent requests into one transaction (one fsync)
  and tells each waiting request when its event is durable. The request answers only then; if the
  write fails, the request fails with 503 (fail closed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.orm import Session

from appliance.audit.chain import COLUMNS, event_hash, truncate_ms
from appliance.errors import Unavailable, VigatraError
from appliance.store.base import utcnow
from appliance.store.models import AuditChainHead, AuditEvent
from appliance.store.session import Store, describe_db_error

log = logging.getLogger(__name__)

HEAD_ID = 1
_HEAD = cast(Table, AuditChainHead.__table__)
_EVENTS = cast(Table, AuditEvent.__table__)  # a Core insert: no ORM bulk-insert machinery per batch


@dataclass(slots=True)
class AuditRecord:
    """What happened, before it gets an id and a place in the chain. ``detail`` is secret-free text.

    Every record is storable from the moment it is made (:func:`storable`): NUL and lone surrogates
    escaped, over-long fields cut with a marker. Records of concurrent requests are committed together,
    so one client's bytes that a database refuses would otherwise fail every request in the batch."""

    action: str
    actor_type: str = "anonymous"
    user_id: int | None = None
    api_key_id: int | None = None
    resource_type: str = ""
    resource_id: str = ""
    ip_address: str = ""
    request_id: str = ""
    method: str = ""
    path: str = ""
    status: int | None = None
    user_agent: str = ""
    outcome: str = "success"
    detail: str = ""
    timestamp: dt.datetime | None = field(default=None)

    def __post_init__(self) -> None:
        if type(self.resource_id) is not str:
            self.resource_id = str(self.resource_id)
        # One pass over all the text for the common case (ASCII, no NUL, within the columns' sizes).
        text = "".join((self.actor_type, self.action, self.resource_type, self.resource_id, self.ip_address,
                        self.request_id, self.method, self.path, self.user_agent, self.outcome, self.detail))
        if (text.isascii() and "\x00" not in text and len(self.path) <= 500 and len(self.user_agent) <= 300
                and len(self.resource_id) <= 100 and len(self.action) <= 64 and len(self.resource_type) <= 64
                and len(self.ip_address) <= 64 and len(self.request_id) <= 64 and len(self.method) <= 10
                and len(self.actor_type) <= 16 and len(self.outcome) <= 16):
            return
        for name, size in _SIZES.items():
            setattr(self, name, storable(getattr(self, name), size))


# The sizes of audit_events' text columns (store.models.audit); detail is unbounded text.
_SIZES: dict[str, int | None] = {
    "actor_type": 16, "action": 64, "resource_type": 64, "resource_id": 100, "ip_address": 64, "request_id": 64,
    "method": 10, "path": 500, "user_agent": 300, "outcome": 16, "detail": None}


def storable(text: str, size: int | None = None) -> str:
    """``text`` in a form every database stores: NUL (PostgreSQL refuses it in text) as ``\\x00``, a lone
    surrogate (it has no UTF-8 form: neither database takes it) as ``\\udXXX``, cut to ``size`` characters
    with "…" as the last. Nothing is dropped silently: what was escaped or cut shows."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    return text if size is None or len(text) <= size else text[: size - 1] + "…"


def _safest(record: AuditRecord) -> AuditRecord:
    """The record as plain ASCII with its numbers in range: what is left to store of a record the database
    refused even after :func:`storable` (the request it belongs to is refused all the same)."""
    safe = dataclasses.replace(record)
    for name, size in _SIZES.items():
        setattr(safe, name, storable(getattr(record, name).encode("ascii", "backslashreplace").decode("ascii"), size))
    safe.detail = json.dumps({"unstorable": True, "detail": safe.detail[:2000]})
    safe.user_id, safe.api_key_id, safe.status = (
        value if isinstance(value, int) and 0 <= value < 2**31 else None
        for value in (record.user_id, record.api_key_id, record.status))
    return safe


def _limit(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def append(executor: Session | Connection, records: Sequence[AuditRecord]) -> list[int]:
    """Add ``records`` to the chain inside ``executor``'s transaction (a session's, for a change whose audit
    rows commit or roll back with it; a Core connection's, for the group committer). Flushes, never commits;
    returns the event ids. The chain head is read under a row lock, so concurrent appenders chain one after
    another."""
    last_id, last_hash = executor.execute(
        select(_HEAD.c.last_id, _HEAD.c.last_hash).where(_HEAD.c.id == HEAD_ID).with_for_update()).one()
    rows = []
    for record in records:
        last_id += 1
        values: dict[str, Any] = {
            "id": last_id,
            "timestamp": truncate_ms(record.timestamp or utcnow()),
            "actor_type": record.actor_type,
            "user_id": record.user_id,
            "api_key_id": record.api_key_id,
            "action": _limit(record.action, 64),
            "resource_type": _limit(record.resource_type, 64),
            "resource_id": _limit(str(record.resource_id), 100),
            "ip_address": _limit(record.ip_address, 64),
            "request_id": _limit(record.request_id, 64),
            "method": _limit(record.method, 10),
            "path": _limit(record.path, 500),
            "status": record.status,
            "user_agent": _limit(record.user_agent, 300),
            "outcome": _limit(record.outcome, 16),
            "detail": record.detail,
            "prev_hash": last_hash,
        }
        last_hash = values["hash"] = event_hash([values[name] for name in COLUMNS])
        rows.append(values)
    if rows:
        executor.execute(insert(_EVENTS), rows)  # one executemany for the batch
        # On a session this UPDATE also refreshes a head object the session already holds (a purge's, a
        # checkpoint's): ORM-enabled statements synchronise the identity map.
        executor.execute(update(AuditChainHead).where(AuditChainHead.id == HEAD_ID).values(
            last_id=last_id, last_hash=last_hash))
    return [row["id"] for row in rows]


def record_failure(store: Store, record: AuditRecord, *, action: str, detail: dict[str, Any],
                   exc: BaseException) -> None:
    """Audit an operation that failed (an export, a purge), in a transaction of its own — best effort:
    the operation's own error is what the caller sees, never one from here."""
    reason = exc.message if isinstance(exc, VigatraError) else (getattr(exc, "strerror", None) or type(exc).__name__)
    try:
        with store.unit_of_work() as session:
            append(session, [dataclasses.replace(
                record, action=action, resource_type="audit", resource_id="", outcome="failure",
                detail=json.dumps({**detail, "reason": str(reason)}, sort_keys=True))])
    except Exception:
        log.warning("could not record the failed %s", action, exc_info=True)


@dataclass
class _Pending:
    record: AuditRecord
    future: Future[int]


class GroupCommitter:
    """A single writer thread that commits the audit events of concurrent requests together."""

    def __init__(self, store: Store, *, max_batch: int = 512, timeout: float = 10.0) -> None:
        self.store = store
        self.max_batch = max_batch
        self.timeout = timeout
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0
        self.events = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        with self._lock:
            if self.running:
                return
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread = self._thread
            self._thread = None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=self.timeout)

    def record(self, record: AuditRecord) -> int:
        """Write ``record`` durably and return its event id; raise Unavailable if that fails."""
        if not self.running:
            return self._write_now([record])[0]
        pending = _Pending(record, Future())
        self._queue.put(pending)
        try:
            return pending.future.result(timeout=self.timeout)
        except FutureTimeout:
            raise Unavailable("the audit trail did not confirm the write in time") from None

    def _write_now(self, records: list[AuditRecord]) -> list[int]:
        try:
            with self.store.transaction(write=True) as conn:
                return append(conn, records)
        except Unavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure means the event is not durable: fail closed
            log.error("audit write failed: %s", describe_db_error(exc))
            raise Unavailable("the audit trail cannot be written") from None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop_after = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop_after = True
                    break
                batch.append(item)
            try:
                ids = self._write_now([p.record for p in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request, which fails closed
                if len(batch) > 1 and _refused_records(exc):
                    self._write_one_by_one(batch)  # so that only a bad record fails, never its batch
                else:
                    for pending in batch:
                        pending.future.set_exception(exc)
            else:
                self.batches += 1
                self.events += len(batch)
                for pending, event_id in zip(batch, ids, strict=True):
                    pending.future.set_result(event_id)
            if stop_after:
                return

    def _write_one_by_one(self, batch: list[_Pending]) -> None:
        """A batch the database refused for what it holds: each record alone. A record refused alone fails
        its own request, and its safest form (:func:`_safest`) is stored in its place: never dropped."""
        for index, pending in enumerate(batch):
            try:
                pending.future.set_result(self._write_now([pending.record])[0])
                self.batches += 1
                self.events += 1
                continue
            except Exception as exc:  # noqa: BLE001 - this request fails closed
                if not _refused_records(exc):  # the store went away meanwhile: the rest fail at once
                    for rest in batch[index:]:
                        rest.future.set_exception(exc)
                    return
            log.error("audit record of request %s refused by the database; storing its safest form",
                      pending.record.request_id or "-")
            with contextlib.suppress(Exception):
                self._write_now([_safest(pending.record)])
            pending.future.set_exception(Unavailable("this request's audit record could not be stored as it was"))


def _refused_records(exc: BaseException) -> bool:
    """Whether a failed audit write failed on what its records hold (a value the database refuses), not
    on the store (unreachable, full, read-only, no permission): only then can writing them one by one help."""
    cause = exc.__cause__ or exc.__context__ if isinstance(exc, Unavailable) else exc
    if isinstance(cause, (DataError, IntegrityError)):
        return True
    if isinstance(cause, DBAPIError):
        return False
    return isinstance(cause, (StatementError, UnicodeError, ValueError, TypeError, OverflowError))
