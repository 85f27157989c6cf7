"""Engine, sessions and the unit of work.

SQLite runs in WAL mode with a busy timeout, foreign keys on, ``secure_delete`` on (replaced
ciphertext must not linger in free pages) and ``synchronous=FULL`` (an audit event is durable
before its response leaves). Writers take the lock up front (``BEGIN IMMEDIATE``) so that a
read-then-write transaction never fails half-way with "database is locked".

PostgreSQL uses psycopg 3 with ``pool_pre_ping`` so the appliance recovers by itself when the
server restarts.

Both keep a pool as large as the process's concurrent users of the database (every server thread,
poll worker and background writer: ``database.pool_size`` 0), so a request never opens a connection
(on SQLite: five PRAGMAs; on PostgreSQL: a server process and its authentication). Three kinds of
session: a write session (:meth:`Store.session` with ``write=True``), a read in one transaction
(``write=False``; a snapshot on SQLite), and :meth:`Store.reader`, whose statements each run on their
own without BEGIN or ROLLBACK (what a request that only reads needs; it refuses to flush).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from appliance.errors import ConfigError, Unavailable
from appliance.settings import Settings

log = logging.getLogger(__name__)

# Execution options our SQLite "begin" listener reads: write sessions start with BEGIN IMMEDIATE (the write
# lock up front), autocommit readers with no BEGIN at all.
WRITE_OPTION = "vigatra_write"
AUTOCOMMIT_OPTION = "vigatra_autocommit"
# Connections beyond the pool, for bursts the pool was not sized for (closed when given back).
POOL_OVERFLOW = 10
# Background users of the database besides server threads and poll workers: the audit group committer,
# the revocation watcher, a scheduler job, one spare.
BACKGROUND_CONNECTIONS = 4


def make_engine(url: str, *, busy_timeout_ms: int = 10000, pool_size: int = 10, echo: bool = False) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("database.url is not a valid database URL") from None
    if parsed.get_backend_name() == "sqlite":
        pool: dict[str, Any] = {}
        if parsed.database not in (None, "", ":memory:"):  # a file: a queue pool of kept connections
            pool = {"pool_size": pool_size, "max_overflow": POOL_OVERFLOW}
        engine = create_engine(
            parsed, echo=echo, connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False}, **pool)
        _install_sqlite_hooks(engine, busy_timeout_ms)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(
            parsed, echo=echo, pool_size=pool_size, max_overflow=POOL_OVERFLOW, pool_pre_ping=True,
            pool_recycle=1800, connect_args={"connect_timeout": 10})
    raise ConfigError(f"database.url: unsupported database {parsed.get_backend_name()!r} (use sqlite or postgresql)")


def pool_size(settings: Settings) -> int:
    """``database.pool_size``, or when it is 0 one connection for each concurrent user of the database."""
    return (settings.database.pool_size
            or settings.server.threads + settings.poller.workers + BACKGROUND_CONNECTIONS)


def engine_from_settings(settings: Settings) -> Engine:
    return make_engine(settings.database_url, busy_timeout_ms=settings.database.busy_timeout_ms,
                       pool_size=pool_size(settings), echo=settings.database.echo)


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
        options = conn.get_execution_options()
        if not options.get(AUTOCOMMIT_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE_OPTION) else "BEGIN")


def _autocommit(engine: Engine) -> Engine:
    """The engine whose connections run each statement on its own (no BEGIN, no COMMIT or ROLLBACK)."""
    if engine.dialect.name == "sqlite":
        # Not SQLAlchemy's AUTOCOMMIT isolation level: resetting it on check-in would hand pysqlite its
        # own transaction handling back. Our connections are in autocommit already; _on_begin skips BEGIN.
        return engine.execution_options(**{AUTOCOMMIT_OPTION: True})
    return engine.execution_options(isolation_level="AUTOCOMMIT")


class ReadOnlySession(Session):
    """A session that refuses to flush: its statements autocommit, so a flush could not be rolled back."""


@event.listens_for(ReadOnlySession, "before_flush")
def _refuse_flush(session: Session, _context: Any, _instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("a read-only session must not change anything (use a unit of work)")


class Store:
    """The engine and a session factory; one per process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # One pool and one set of listeners; the write and autocommit engines only add execution options.
        self._write_engine = engine.execution_options(**{WRITE_OPTION: True})
        self._reads = sessionmaker(engine, expire_on_commit=False, autoflush=True)
        self._writes = sessionmaker(self._write_engine, expire_on_commit=False, autoflush=True)
        self._readers = sessionmaker(_autocommit(engine), class_=ReadOnlySession, expire_on_commit=False,
                                     autoflush=False)
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

    def reader(self) -> Session:
        """A session for reads that need no snapshot: each statement runs on its own, as each statement of a
        PostgreSQL READ COMMITTED transaction sees the database anew anyway; so a read pays no BEGIN and no
        ROLLBACK. It refuses to flush. The caller closes it."""
        return self._readers()

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Connection]:
        """One transaction on a Core connection (no ORM session), committed on success and rolled back on
        any exception: for a writer that issues a few fixed statements many times a second."""
        with (self._write_engine if write else self.engine).begin() as conn:
            yield conn

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
