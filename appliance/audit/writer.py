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
    """What happened, before it gets an id and a place in the chain. ``detail`` is secret-free text."""

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
                for pending in batch:
                    pending.future.set_exception(exc)
            else:
                self.batches += 1
                self.events += len(batch)
                for pending, event_id in zip(batch, ids, strict=True):
                    pending.future.set_result(event_id)
            if stop_after:
                return
