"""Whether the store takes writes now: what ``/healthz`` answers, so that a load balancer or monitoring
takes a node whose database cannot be written (disk full, read-only, failed over) out of service —
every request there would be refused with 503, since none may answer without its audit record.

The probe rewrites one row (``store_probes``) in a write transaction of its own, as a request's unit of
work would. SQLite also reports full before a write fails: at ``max_page_count`` with no free page,
or with less than :data:`SQLITE_RESERVE_BYTES` left on the database's filesystem (a write that finds
room in the WAL still succeeds there, but the next checkpoint or WAL growth does not).

``/healthz`` needs no credentials, so a flood of probes must not become a flood of fsyncs: a result
is reused for ``min_interval`` seconds, and concurrent callers wait for the one probe in flight.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from appliance.errors import Unavailable
from appliance.store.base import utcnow
from appliance.store.models import StoreProbe
from appliance.store.session import Store, describe_db_error

log = logging.getLogger(__name__)

OK = "ok"
UNREACHABLE = "unreachable"
NOT_WRITABLE = "not_writable"
# Below this much free space the disk counts as full: a few WAL frames' worth, so that the node leaves
# service before its writes fail rather than after.
SQLITE_RESERVE_BYTES = 1 << 20
_PROBE_ROW = 1


class WriteProbe:
    """Probes whether ``store`` takes writes; :meth:`check` answers ``ok``, ``unreachable`` or ``not_writable``."""

    def __init__(self, store: Store, node: str, *, min_interval: float = 1.0) -> None:
        self.store = store
        self.node = node[:100]
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._result = OK

    def check(self) -> str:
        with self._lock:
            now = time.monotonic()
            if self._checked_at is not None and now - self._checked_at < self.min_interval:
                return self._result
            result = self._probe()
            if result != self._result:
                log.log(logging.INFO if result == OK else logging.WARNING, "store write probe: %s", result)
            self._checked_at, self._result = time.monotonic(), result
            return result

    def _probe(self) -> str:
        try:
            self.store.ping()
        except Unavailable:
            return UNREACHABLE
        try:
            with self.store.unit_of_work() as session:
                full = self._sqlite_full(session) if self.store.dialect == "sqlite" else None
                if full is not None:
                    log.warning("store cannot be written: %s", full)
                    return NOT_WRITABLE
                written = session.execute(update(StoreProbe).where(StoreProbe.id == _PROBE_ROW).values(
                    node=self.node, probed_at=utcnow()))
                if not getattr(written, "rowcount", 0):
                    session.add(StoreProbe(id=_PROBE_ROW, node=self.node, probed_at=utcnow()))
        except IntegrityError:
            return OK  # another node created the row at the same moment: the store took that write
        except DBAPIError as exc:
            log.warning("store cannot be written: %s", describe_db_error(exc))
            return NOT_WRITABLE
        return OK

    def _sqlite_full(self, session: Session) -> str | None:
        def pragma(name: str) -> int:
            return int(session.execute(text(f"PRAGMA {name}")).scalar_one())

        if pragma("page_count") >= pragma("max_page_count") and pragma("freelist_count") == 0:
            return "the database reached its max_page_count"
        database = self.store.engine.url.database
        if database and database != ":memory:":
            stats = os.statvfs(Path(database).resolve().parent)
            if stats.f_bavail * stats.f_frsize < SQLITE_RESERVE_BYTES:
                return "the filesystem holding the database is full"
        return None
