"""Engine, sessions and the unit of work.

SQLite runs in WAL mode with a busy timeout, foreign keys on, ``secure_delete`` on (replaced
ciphertext must not linger in free pages) and ``synchronous=FULL`` (an audit event is durable
before its response leaves). Writers take the lock up front (``BEGIN IMMEDIATE``) so that a
read-then-write transaction never fails half-way with "database is locked".

PostgreSQL uses psycopg 3 with ``pool_pre_ping`` so the appliance recovers by itself when the
server restarts.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from appliance.errors import ConfigError, Unavailable
from appliance.settings import Settings

log = logging.getLogger(__name__)

# Execution option carried by the connections of write sessions (Store.session(write=True)): on SQLite their
# transaction starts with BEGIN IMMEDIATE, taking the write lock up front.
WRITE_OPTION = "vigatra_write"


def make_engine(url: str, *, busy_timeout_ms: int = 10000, pool_size: int = 10, echo: bool = False) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("database.url is not a valid database URL") from None
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            parsed, echo=echo, connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False})
        _install_sqlite_hooks(engine, busy_timeout_ms)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(
            parsed, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
            pool_recycle=1800, connect_args={"connect_timeout": 10})
    raise ConfigError(f"database.url: unsupported database {parsed.get_backend_name()!r} (use sqlite or postgresql)")


def engine_from_settings(settings: Settings) -> Engine:
    return make_engine(settings.database_url, busy_timeout_ms=settings.database.busy_timeout_ms,
                       pool_size=settings.database.pool_size, echo=settings.database.echo)


def _install_sqlite_hooks(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN itself (pysqlite's implicit BEGIN is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.execute("PRAGMA synchronous=FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN")


class Store:
    """The engine and a session factory; one per process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reads = sessionmaker(engine, expire_on_commit=False, autoflush=True)
        # The same pool and listeners; its connections carry WRITE_OPTION (see _on_begin).
        self._writes = sessionmaker(engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False,
                                    autoflush=True)
        self._queue = threading.Lock()  # see queued_unit_of_work

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        return cls(engine_from_settings(settings))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self, *, write: bool) -> Session:
        """A new session; the caller commits or rolls back and closes it. ``write``: its transaction will
        change something, so on SQLite it takes the write lock when it starts (``BEGIN IMMEDIATE``), not
        half-way through, where a read-then-write transaction could fail with "database is locked"."""
        return self._writes() if write else self._reads()

    @contextlib.contextmanager
    def unit_of_work(self, *, write: bool = True) -> Iterator[Session]:
        """One transaction, committed once on success and rolled back on any exception."""
        session = self.session(write=write)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextlib.contextmanager
    def queued_unit_of_work(self) -> Iterator[Session]:
        """unit_of_work for many threads of this process that write at once (the poller's pool). On
        SQLite they first queue on a lock of this process: SQLite's busy handler retries with sleeps
        of up to 100 ms, so with dozens of threads the database lock sits free while waiters sleep,
        and an unlucky writer can wait past the busy timeout ("database is locked"). A Python lock
        hands over at once. PostgreSQL needs no queue."""
        if self.dialect != "sqlite":
            with self.unit_of_work() as session:
                yield session
            return
        with self._queue, self.unit_of_work() as session:
            yield session

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session (rolled back at the end)."""
        with self.unit_of_work(write=False) as session:
            yield session
            session.rollback()

    def ping(self) -> None:
        """Raise Unavailable unless the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            raise Unavailable(f"database unreachable: {describe_db_error(exc)}") from None

    def dispose(self) -> None:
        self.engine.dispose()


def describe_db_error(exc: BaseException) -> str:
    """First line of a driver error, without the SQL or parameters SQLAlchemy appends."""
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return first[:300]
