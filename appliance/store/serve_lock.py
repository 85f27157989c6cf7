"""Who is using the database: every `vigatra serve` holds a shared lock, a restore takes it exclusively.

A restore replaces the whole database; doing that under a running appliance would let it keep
writing into the old file (SQLite) or into tables being dropped (PostgreSQL), so `backup restore`
refuses unless no appliance process is running — on any host sharing the database:

- SQLite: ``flock`` on ``<database>.serve-lock`` next to the database file (shared by serve,
  exclusive by restore). The kernel drops it when the process dies, so a crash leaves no stale lock.
- PostgreSQL: the session-level advisory lock :data:`PG_LOCK_KEY`, shared by each serve process,
  taken exclusively by restore, so every node of a scale-out deployment counts.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from appliance.errors import Conflict
from appliance.store.dump import sqlite_path

# An arbitrary constant: "Vigatra serve" in ASCII, as a signed 64-bit advisory-lock key.
PG_LOCK_KEY = 0x5669676174726153


def _lock_file(engine: Engine) -> Path:
    path = sqlite_path(engine)
    return path.with_name(path.name + ".serve-lock")


class ServeLock:
    """One held lock; ``release()`` (or process exit) lets it go."""

    def __init__(self, handle: Any, kind: str, unlock: str = "") -> None:
        self._handle = handle
        self._kind = kind
        self._unlock = unlock

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        if self._kind == "flock":
            os.close(handle)
            return
        # The connection goes back to the pool, not away: unlock explicitly (a session-level advisory
        # lock outlives the checkout).
        try:
            handle.execute(text(f"SELECT {self._unlock}(:key)"), {"key": PG_LOCK_KEY})
        finally:
            handle.close()


def _acquire(engine: Engine, *, exclusive: bool) -> ServeLock | None:
    if engine.dialect.name == "sqlite":
        fd = os.open(_lock_file(engine), os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return ServeLock(fd, "flock")
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    function = "pg_try_advisory_lock" if exclusive else "pg_try_advisory_lock_shared"
    got = conn.execute(text(f"SELECT {function}(:key)"), {"key": PG_LOCK_KEY}).scalar()
    if not got:
        conn.close()
        return None
    return ServeLock(conn, "advisory", "pg_advisory_unlock" if exclusive else "pg_advisory_unlock_shared")


def hold_for_serving(engine: Engine) -> ServeLock:
    """Taken by `vigatra serve` for its lifetime; refused while a restore runs."""
    lock = _acquire(engine, exclusive=False)
    if lock is None:
        raise Conflict("a backup restore is replacing the database; start the appliance when it has finished")
    return lock


def hold_for_restore(engine: Engine) -> ServeLock:
    """Taken by `vigatra backup restore`; refused while any appliance process uses the database."""
    lock = _acquire(engine, exclusive=True)
    if lock is None:
        where = "" if engine.dialect.name == "sqlite" else " (on any host sharing this database)"
        raise Conflict(f"the appliance is running{where}: stop it first (systemctl stop vigatra), then restore")
    return lock
