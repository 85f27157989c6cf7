"""Consistent online snapshots of the database, and loading one back, through the driver's connection.

Backups (services/backup.py) must work on an air-gapped host where neither the ``sqlite3`` tool nor
``pg_dump`` is installed, and must agree exactly with the audit chain head they record:

- **SQLite**: the online backup API of Python's ``sqlite3`` module (``Connection.backup``) copies
  the database page by page from one read transaction, so the copy is one consistent state even
  while the appliance writes (WAL mode: readers never block writers). The head is read from the copy.
- **PostgreSQL**: one ``REPEATABLE READ READ ONLY`` transaction (a single snapshot) reads the chain
  head and then ``COPY ... TO STDOUT (FORMAT binary)`` for every table, in foreign-key order — what
  ``pg_dump`` does, without the DDL: the schema is recreated on restore by the appliance's own
  migrations at the dump's revision, which the dump names. Format ``vigatra-pgcopy/1``::

      b"VIGATRA-PGCOPY 1\\n" | header JSON line | per table: frames (4-byte big-endian length | COPY
      bytes), a zero length ends the table | b"END\\n"

Loading a PostgreSQL dump happens in one transaction: drop the appliance's tables, run the
migrations up to the dump's revision, COPY every table back, reset the sequences, then migrate to
the newest schema. Any failure rolls all of it back and leaves the database as it was.
"""

from __future__ import annotations

import json
import sqlite3
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, inspect, text
from sqlalchemy.engine import make_url

from appliance.errors import Conflict, IntegrityFailure, Invalid
from appliance.store.migrate import alembic_config

PG_MAGIC = b"VIGATRA-PGCOPY 1\n"
PG_END = b"END\n"
PG_FORMAT = "vigatra-pgcopy/1"
SQLITE_FORMAT = "sqlite3-database"
_FRAME = struct.Struct(">I")
_MAX_FRAME = 1 << 26
_NOT_DATA = ("alembic_version",)
# Objects the migrations create besides tables (PostgreSQL); dropped with the tables on load.
_PG_FUNCTIONS = ("vigatra_audit_append_only()",)


@dataclass(frozen=True)
class ChainHead:
    last_event_id: int
    last_hash: str
    purged_through_id: int

    def as_dict(self) -> dict[str, Any]:
        return {"last_event_id": self.last_event_id, "last_hash": self.last_hash,
                "purged_through_id": self.purged_through_id}


@dataclass(frozen=True)
class SnapshotInfo:
    dialect: str
    format: str
    revision: str | None
    head: ChainHead
    rows: dict[str, int] = field(default_factory=dict)


def sqlite_path(engine: Engine) -> Path:
    database = make_url(str(engine.url)).database
    if not database or database == ":memory:":
        raise Invalid("the SQLite database has no file to back up")
    return Path(database)


# ---------------------------------------------------------------------------------------------
# SQLite


def snapshot_sqlite(engine: Engine, target: Path) -> SnapshotInfo:
    """Copy the live database into ``target`` (a new file) with the online backup API."""
    raw = engine.raw_connection()
    try:
        source = raw.driver_connection
        assert isinstance(source, sqlite3.Connection)
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
    finally:
        raw.close()
    return describe_sqlite_file(target)


def describe_sqlite_file(path: Path) -> SnapshotInfo:
    """Revision, chain head and row counts of a SQLite file, read without changing it."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                                            "'sqlite_%' ORDER BY name")]
        if "audit_chain_head" not in names:
            raise IntegrityFailure(f"{path} is not a Vigatra database (no audit_chain_head table)")
        revision = _sqlite_revision(conn, names)
        row = conn.execute("SELECT last_id, last_hash, purged_through_id FROM audit_chain_head WHERE id = 1").fetchone()
        if row is None:
            raise IntegrityFailure(f"{path} has no audit chain head row")
        rows = {name: int(conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])  # noqa: S608 - names from sqlite_master
                for name in names if name not in _NOT_DATA}
    finally:
        conn.close()
    return SnapshotInfo("sqlite", SQLITE_FORMAT, revision, ChainHead(int(row[0]), str(row[1]), int(row[2])), rows)


def _sqlite_revision(conn: sqlite3.Connection, names: list[str]) -> str | None:
    if "alembic_version" not in names:
        return None
    found = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(found[0]) if found else None


def check_sqlite_file(path: Path) -> None:
    """Raise IntegrityFailure unless SQLite's own integrity check passes on ``path``."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        raise IntegrityFailure(f"{path} is not a readable SQLite database ({exc})") from None
    finally:
        conn.close()
    if [r[0] for r in result] != ["ok"]:
        raise IntegrityFailure(f"SQLite integrity check failed on {path}: {result[0][0]}")


# ---------------------------------------------------------------------------------------------
# PostgreSQL: dump. Table and column names in SQL below come from the live schema (reflection), or
# from the dump after they were checked against it, and are quoted by the dialect's preparer.


def _pg_tables(conn: Connection) -> list[tuple[str, list[str]]]:
    """The public schema's tables in foreign-key order (parents first), with their columns in order."""
    metadata = MetaData()
    metadata.reflect(bind=conn, schema=None)
    tables = []
    for table in metadata.sorted_tables:
        if table.name in _NOT_DATA:
            continue
        tables.append((table.name, [column.name for column in table.columns]))
    return tables


def _pg_head(conn: Connection) -> ChainHead:
    row = conn.execute(text("SELECT last_id, last_hash, purged_through_id FROM audit_chain_head WHERE id = 1")).one()
    return ChainHead(int(row[0]), str(row[1]), int(row[2]))


def dump_postgres(engine: Engine, sink: BinaryIO) -> SnapshotInfo:
    """Write every table's rows, from one snapshot, to ``sink`` in the vigatra-pgcopy/1 format."""
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        conn.execute(text("SET TRANSACTION READ ONLY"))
        head = _pg_head(conn)  # the first query fixes the snapshot every COPY below reads
        revision = MigrationContext.configure(conn).get_current_revision()
        tables = _pg_tables(conn)
        quote = conn.dialect.identifier_preparer.quote
        header = {"format": PG_FORMAT, "revision": revision, "head": head.as_dict(),
                  "tables": [{"name": name, "columns": columns} for name, columns in tables]}
        sink.write(PG_MAGIC)
        sink.write(json.dumps(header, sort_keys=True).encode("utf-8") + b"\n")
        driver = conn.connection.driver_connection
        assert driver is not None
        rows: dict[str, int] = {}
        with driver.cursor() as cursor:
            for name, columns in tables:
                column_list = ", ".join(quote(c) for c in columns)
                with cursor.copy(f"COPY {quote(name)} ({column_list}) TO STDOUT (FORMAT binary)") as copy:
                    for block in copy:
                        data = bytes(block)
                        for start in range(0, len(data), _MAX_FRAME):
                            piece = data[start:start + _MAX_FRAME]
                            sink.write(_FRAME.pack(len(piece)))
                            sink.write(piece)
                sink.write(_FRAME.pack(0))
                rows[name] = int(conn.execute(text(f"SELECT count(*) FROM {quote(name)}")).scalar_one())  # noqa: S608
        sink.write(PG_END)
    return SnapshotInfo("postgresql", PG_FORMAT, revision, head, rows)


# ---------------------------------------------------------------------------------------------
# PostgreSQL: load


def read_pg_header(source: BinaryIO) -> dict[str, Any]:
    magic = source.read(len(PG_MAGIC))
    if magic != PG_MAGIC:
        raise IntegrityFailure("not a vigatra-pgcopy/1 dump")
    line = source.readline(1 << 20)
    try:
        header = json.loads(line)
    except ValueError:
        raise IntegrityFailure("the dump's header is not JSON") from None
    if not isinstance(header, dict) or header.get("format") != PG_FORMAT or not isinstance(header.get("tables"), list):
        raise IntegrityFailure("the dump's header is not a vigatra-pgcopy/1 header")
    return header


def known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return {rev.revision for rev in script.walk_revisions()}


def _drop_appliance_schema(conn: Connection) -> None:
    quote = conn.dialect.identifier_preparer.quote
    for name in inspect(conn).get_table_names():
        conn.execute(text(f"DROP TABLE IF EXISTS {quote(name)} CASCADE"))
    for function in _PG_FUNCTIONS:
        conn.execute(text(f"DROP FUNCTION IF EXISTS {function} CASCADE"))


def _copy_in(conn: Connection, source: BinaryIO, tables: list[dict[str, Any]]) -> dict[str, int]:
    quote = conn.dialect.identifier_preparer.quote
    live = {name: [c["name"] for c in inspect(conn).get_columns(name)] for name in inspect(conn).get_table_names()}
    for entry in tables:
        name, columns = entry.get("name"), entry.get("columns")
        if name not in live or not isinstance(columns, list) or sorted(columns) != sorted(live[name]):
            raise IntegrityFailure(f"the dump's table {name!r} does not match the schema at its revision")
    for entry in tables:  # rows the migrations seed (chain head, auth revision) are in the dump too
        conn.execute(text(f"DELETE FROM {quote(entry['name'])}"))  # noqa: S608 - checked against the schema
    driver = conn.connection.driver_connection
    assert driver is not None
    counts: dict[str, int] = {}
    with driver.cursor() as cursor:
        for entry in tables:
            name, columns = entry["name"], entry["columns"]
            column_list = ", ".join(quote(c) for c in columns)
            with cursor.copy(f"COPY {quote(name)} ({column_list}) FROM STDIN (FORMAT binary)") as copy:
                while True:
                    size_bytes = source.read(_FRAME.size)
                    if len(size_bytes) != _FRAME.size:
                        raise IntegrityFailure(f"the dump ends inside table {name}")
                    (size,) = _FRAME.unpack(size_bytes)
                    if size == 0:
                        break
                    if size > _MAX_FRAME:
                        raise IntegrityFailure(f"the dump is corrupt in table {name} (frame of {size} bytes)")
                    data = source.read(size)
                    if len(data) != size:
                        raise IntegrityFailure(f"the dump ends inside table {name}")
                    copy.write(data)
            counts[name] = int(conn.execute(text(f"SELECT count(*) FROM {quote(name)}")).scalar_one())  # noqa: S608
            for column in columns:
                sequence = conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                        {"t": quote(name), "c": column}).scalar()
                if sequence:
                    top = f"SELECT max({quote(column)}) FROM {quote(name)}"  # noqa: S608 - schema identifiers
                    conn.execute(text(f"SELECT setval(:s, COALESCE(({top}), 0) + 1, false)"), {"s": sequence})
    if source.read(len(PG_END)) != PG_END:
        raise IntegrityFailure("the dump does not end where its header says")
    return counts


def load_postgres(engine: Engine, source: BinaryIO, *, migrate: bool = True,
                  before_commit: Callable[[Connection], None] | None = None) -> SnapshotInfo:
    """Replace the database's contents with the dump in ``source``, in one transaction.

    ``before_commit`` runs inside that transaction after the data is in and the schema is at head
    (the restore writes its audit event there), so a failure anywhere leaves the old database.
    """
    header = read_pg_header(source)
    revision = header.get("revision")
    if revision not in known_revisions():
        raise Conflict(f"the backup's schema revision {revision} is unknown to this version of Vigatra "
                       "(it was made by a newer one): restore it with the release that made it")
    with engine.begin() as conn:
        _drop_appliance_schema(conn)
        command.upgrade(alembic_config(conn), str(revision))
        counts = _copy_in(conn, source, list(header["tables"]))
        if migrate:
            command.upgrade(alembic_config(conn), "head")
        if before_commit is not None:
            before_commit(conn)
    head = header.get("head") or {}
    return SnapshotInfo("postgresql", PG_FORMAT, str(revision),
                        ChainHead(int(head.get("last_event_id", 0)), str(head.get("last_hash", "")),
                                  int(head.get("purged_through_id", 0))), counts)


class ChunkReader:
    """A read-only file object over an iterator of byte chunks (a decrypting stream)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()
        self._done = False

    def _fill(self, size: int) -> None:
        while not self._done and (size < 0 or len(self._buffer) < size):
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                self._done = True

    def read(self, size: int = -1) -> bytes:
        self._fill(size)
        if size < 0:
            size = len(self._buffer)
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def readline(self, limit: int = -1) -> bytes:
        while True:
            index = self._buffer.find(b"\n")
            if index >= 0 or self._done or (0 <= limit <= len(self._buffer)):
                break
            self._fill(len(self._buffer) + 65536)
        end = index + 1 if index >= 0 else len(self._buffer)
        if limit >= 0:
            end = min(end, limit)
        return self.read(end)
