"""Reading the trail out: filtered queries, the CSV export (constant memory), formula-safe cells.

The CSV's first six columns are exactly ``user_id,action,resource_type,resource_id,ip_address,
timestamp`` (what a regulator asks for), followed by every other column, so an export can be
re-verified against the chain. Cells that a spreadsheet would treat as a formula (leading ``=``,
``+``, ``-``, ``@``, tab, carriage return or NUL) are prefixed with ``'`` (SECURITY.md).

:func:`export_csv` is the one CSV path (``GET /api/v1/audit?format=csv`` and exports to media): it
must hold 250k+ events/s on 10M events in under 150 MB per process (bench/bench_audit_export.py), so
the id range is split into ranges rendered in parallel by spawned worker processes (as chain
verification does) and handed on in order as UTF-8 bytes. Its bytes are exactly what ``csv.writer``
writes for ``escape_row(row) for row in iter_rows(...)``; tests hold it to that.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import logging
import multiprocessing
import os
import re
import threading
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any, cast

from sqlalchemy import Connection, Engine, Select, bindparam, func, literal_column, select
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from appliance.audit.chain import format_timestamp
from appliance.audit.workers import die_with_parent
from appliance.store.models import AuditEvent
from appliance.store.session import Store, make_engine

log = logging.getLogger(__name__)

HEAD = ("user_id", "action", "resource_type", "resource_id", "ip_address", "timestamp")
REST = ("id", "actor_type", "api_key_id", "request_id", "method", "path", "status", "user_agent", "outcome",
        "detail", "prev_hash", "hash")
CSV_COLUMNS = HEAD + REST
_FORMULA = ("=", "+", "-", "@", "\t", "\r", "\0")
# A value that itself starts with "'" before one of these is prefixed too, so unescape_cell is exact:
# without it "'=x" (e.g. a user agent) would come back as "=x" and its event would not verify.
_QUOTED = frozenset((*_FORMULA, "'"))
_RISKY = "".join(_QUOTED)  # first characters that may need the prefix: one substring test per cell


@dataclass(frozen=True)
class AuditFilter:
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    user_id: int | None = None
    resource_type: str | None = None
    action: str | None = None
    after_id: int | None = None
    through_id: int | None = None

    def apply(self, stmt: Select[Any]) -> Select[Any]:
        if self.since is not None:
            stmt = stmt.where(AuditEvent.timestamp >= self.since)
        if self.until is not None:
            stmt = stmt.where(AuditEvent.timestamp < self.until)
        if self.user_id is not None:
            stmt = stmt.where(AuditEvent.user_id == self.user_id)
        if self.resource_type:
            stmt = stmt.where(AuditEvent.resource_type == self.resource_type)
        if self.action:
            stmt = stmt.where(AuditEvent.action == self.action)
        if self.after_id is not None:
            stmt = stmt.where(AuditEvent.id > self.after_id)
        if self.through_id is not None:
            stmt = stmt.where(AuditEvent.id <= self.through_id)
        return stmt


def escape_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    text = str(value)
    if text and (text[0] in _FORMULA or (text[0] == "'" and text[1:2] in _QUOTED)):
        return "'" + text
    return text


def unescape_cell(text: str) -> str:
    """Undo escape_cell for a string cell (what verify uses to rebuild the chain from a CSV)."""
    if len(text) >= 2 and text[0] == "'" and text[1] in _QUOTED:
        return text[1:]
    return text


_COLUMNS = [getattr(AuditEvent, name) for name in CSV_COLUMNS]
_TIMESTAMP = CSV_COLUMNS.index("timestamp")
# Text columns: the only cells that can start with a formula character.
_TEXT = tuple(i for i, name in enumerate(CSV_COLUMNS) if name not in ("user_id", "api_key_id", "id", "status",
                                                                         "timestamp"))


def escape_row(row: Sequence[Any]) -> list[Any]:
    """escape_cell over a whole row, without a function call per cell (exports run to millions of rows):
    integers and None go to the csv module as they are (it writes them exactly as str() would)."""
    out = list(row)
    stamp = out[_TIMESTAMP]
    if isinstance(stamp, dt.datetime):
        out[_TIMESTAMP] = format_timestamp(stamp)
    for i in _TEXT:
        text = out[i]
        if text and text[0] in _RISKY and (text[0] != "'" or text[1:2] in _QUOTED):
            out[i] = "'" + text
    return out


def iter_rows(session: Session, flt: AuditFilter, *, batch: int = 5000) -> Iterator[tuple[Any, ...]]:
    """Matching events in id order as tuples in CSV_COLUMNS order, fetched by keyset pages."""
    after = flt.after_id
    while True:
        page_filter = AuditFilter(flt.since, flt.until, flt.user_id, flt.resource_type, flt.action, after,
                                  flt.through_id)
        stmt = page_filter.apply(select(*_COLUMNS)).order_by(AuditEvent.id).limit(batch)
        rows = session.execute(stmt).all()
        if not rows:
            return
        for row in rows:
            yield tuple(row)
        after = rows[-1][CSV_COLUMNS.index("id")]
        if len(rows) < batch:
            return


def newest_first(session: Session, flt: AuditFilter, *, before_id: int | None = None, limit: int = 100
                 ) -> list[tuple[Any, ...]]:
    """One page of matching events, newest first (the dashboard's order), before ``before_id``: tuples in
    CSV_COLUMNS order. Exports and the API's default keep id order, oldest first (iter_rows)."""
    stmt = flt.apply(select(*_COLUMNS)).order_by(AuditEvent.id.desc()).limit(limit)
    if before_id is not None:
        stmt = stmt.where(AuditEvent.id < before_id)
    return [tuple(row) for row in session.execute(stmt).all()]


# The timestamp as the chain's text, computed by PostgreSQL (UTC, milliseconds truncated like
# chain.format_timestamp).
PG_STAMP_SQL = "to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
# The same computed by SQLite from the text SQLAlchemy stores ("YYYY-MM-DD HH:MM:SS.ffffff", UTC): exactly
# chain.stamp_from_sqlite. NULL for any other form; that row then reads its timestamp through the model's type.
SQLITE_STAMP_SQL = ("CASE WHEN typeof(timestamp) = 'text' AND length(timestamp) = 26 AND substr(timestamp, 11, 1) = ' '"
                    " THEN substr(timestamp, 1, 10) || 'T' || substr(timestamp, 12, 12) || 'Z' END")

# -------------------------------------------------------------------------------------------------
# Rendering one id range
#
# Exports run to tens of millions of rows, so the database does what it does fastest: every cell arrives
# as the text the CSV holds (integers as decimals, NULL as "", the timestamp as the chain's text), and a
# line is one str.join. The line is kept as it is when nothing in it needs quoting or a formula prefix —
# exactly 17 commas, no quote, CR or LF, and no cell after the first starting with a character escape_cell
# prefixes (the first cell, user_id, is an integer) — as for API clients' requests. Any other line (a user
# agent with a comma, a JSON detail with quotes, a formula) is written by escape_row + CSV quoting
# from the cells already in hand (quoted by hand exactly as csv.writer quotes: tests hold the two equal).

HEADER = (",".join(CSV_COLUMNS) + "\r\n").encode("utf-8")
_ID = CSV_COLUMNS.index("id")
_HASH = CSV_COLUMNS.index("hash")
_SEPARATORS = len(CSV_COLUMNS) - 1
_NEEDS_PREFIX = re.compile(",[" + re.escape(_RISKY) + "]")  # one literal-led pattern: fast, unlike alternations
_INTEGERS = ("user_id", "api_key_id", "status")
PAGE_ROWS = 5000


@dataclass(frozen=True)
class CsvPart:
    """A piece of the CSV (UTF-8) and the events in it: media's manifest names the first and last."""

    data: bytes
    rows: int = 0
    first_id: int | None = None
    first_hash: str | None = None
    last_id: int | None = None
    last_hash: str | None = None


def _text_cells(dialect: str) -> list[Any]:
    """CSV_COLUMNS as SQL expressions that each return the cell's text (column names are constants)."""
    cells: list[Any] = []
    for name in CSV_COLUMNS:
        if name == "timestamp":
            cells.append(literal_column(SQLITE_STAMP_SQL if dialect == "sqlite" else PG_STAMP_SQL))
        elif name in _INTEGERS:
            cells.append(literal_column(f"coalesce(CAST({name} AS TEXT), '')"))
        elif name == "id":
            cells.append(literal_column("CAST(id AS TEXT)"))
        else:
            cells.append(getattr(AuditEvent, name))
    return cells


class _PageQuery:
    """One page of a filtered id range, compiled once to the driver's SQL with its parameters processed by
    their column types (a datetime becomes the text SQLite stores): pages then run on the DBAPI cursor,
    which hands back plain tuples (SQLAlchemy Row objects add about a tenth to each event's cost: a 10M-event
    export streams every row, bench/bench_audit_export.py)."""

    def __init__(self, dialect: Dialect, flt: AuditFilter, page: int) -> None:
        stmt = (replace(flt, after_id=None, through_id=None).apply(select(*_text_cells(dialect.name)))
                .select_from(AuditEvent)
                .where(AuditEvent.id > bindparam("after", 0), AuditEvent.id <= bindparam("through", 0))
                .order_by(AuditEvent.id).limit(page))
        compiled = stmt.compile(dialect=dialect)
        self.sql = compiled.string
        self.values: dict[str, Any] = {}
        for name, value in compiled.construct_params().items():
            process = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            self.values[name] = process(value) if process is not None else value
        self.order = compiled.positiontup  # None for drivers that take named parameters

    def params(self, after: int, through: int) -> Any:
        values = {**self.values, "after": after, "through": through}
        return tuple(values[name] for name in self.order) if self.order is not None else values


class _RangeRenderer:
    """Renders the events matching one filter, one id range at a time, on one connection."""

    def __init__(self, conn: Connection, flt: AuditFilter, page: int = PAGE_ROWS) -> None:
        self.conn = conn
        self.page = page
        self.query = _PageQuery(conn.dialect, flt, page)

    def render(self, lo: int, hi: int) -> CsvPart:
        """The CSV lines of the matching events with lo <= id <= hi, in id order."""
        cursor = self.conn.connection.cursor()
        try:
            chunks: list[bytes] = []
            first: Any = None
            last: Any = None
            rows = 0
            after = lo - 1
            while True:
                cursor.execute(self.query.sql, self.query.params(after, hi))
                page = cursor.fetchall()
                if not page:
                    break
                chunks.append(("\r\n".join(self._lines(page)) + "\r\n").encode("utf-8"))
                if first is None:
                    first = page[0]
                last = page[-1]
                rows += len(page)
                if len(page) < self.page:
                    break
                after = int(last[_ID])
        finally:
            cursor.close()
        if not rows:
            return CsvPart(b"")
        return CsvPart(b"".join(chunks), rows, int(first[_ID]), first[_HASH], int(last[_ID]), last[_HASH])

    def _lines(self, rows: Sequence[tuple[Any, ...]]) -> list[str]:
        lines: list[str] = []
        append, join, needs_prefix = lines.append, ",".join, _NEEDS_PREFIX.search
        for row in rows:
            try:
                line = join(row)
            except TypeError:  # a NULL cell: a timestamp SQLite holds in another text form
                append(self._exact(row))
                continue
            if needs_prefix(line):  # a cell may start with a formula character (or a comma in a cell did)
                append(self._exact(row))
            elif line.count(",") == _SEPARATORS and '"' not in line and "\n" not in line and "\r" not in line:
                append(line)
            else:  # no cell needs a prefix, some need quotes (a browser's user agent, a JSON detail)
                append(_quoted_line(row))
        return lines

    def _exact(self, row: tuple[Any, ...]) -> str:
        """The line as csv.writer writes escape_row(row); the timestamp read through the model's type when
        the SQL could not convert it (as chain verification reads it)."""
        cells = list(row)
        if cells[_TIMESTAMP] is None:
            cells[_TIMESTAMP] = self.conn.execute(
                select(AuditEvent.timestamp).where(AuditEvent.id == int(cells[_ID]))).scalar_one()
        return _quoted_line(["" if cell is None else cell for cell in escape_row(cells)])


def _quoted_line(cells: Sequence[str]) -> str:
    """Text cells joined as csv.writer (excel dialect, QUOTE_MINIMAL) joins them: a cell in quotes, with
    its quotes doubled, when it holds a quote, a comma, CR or LF. By hand and in one expression because
    browsers' user agents ("KHTML, like Gecko") and JSON details put many lines here: the csv module
    takes ~5x longer per line, a function call per cell ~1.4x."""
    return ",".join([('"' + c.replace('"', '""') + '"') if '"' in c
                     else ('"' + c + '"') if ("," in c or "\n" in c or "\r" in c) else c for c in cells])


# -------------------------------------------------------------------------------------------------
# The whole export: id ranges rendered here or by worker processes, handed on in order

# Below this many ids one process is faster than starting workers (spawning one takes ~0.5 s).
PARALLEL_MIN = 200_000
# Ids per range: large enough that handing a range over costs nothing next to rendering it, small
# enough that the ranges in flight (2 per worker, ~300 bytes per event) keep every process small.
RANGE_IDS = 25_000

_parallel = threading.Lock()  # one parallel export per process: a second one at the same time runs in process
_worker_engine: Engine | None = None


def export_csv(store: Store, flt: AuditFilter, *, workers: int | None = None, range_ids: int = RANGE_IDS,
               parallel_min: int = PARALLEL_MIN, page: int = PAGE_ROWS) -> Generator[CsvPart, None, None]:
    """The CSV of the events matching ``flt`` as parts in order: the header, then the events in id order.

    The export is one consistent id range: its bounds are read once at the start (events appended
    meanwhile are left out). Large ranges are rendered by ``workers`` spawned processes (default: the
    CPU count; 1 = in this process), at most ``2 * workers`` ranges in flight so memory stays flat.
    Closing the iterator early (a client went away) cancels what is pending and stops the workers.
    """
    bounds = _id_bounds(store, flt)
    yield CsvPart(HEADER)
    if bounds is None:
        return
    lo, hi = bounds
    ranges = [(start, min(start + range_ids - 1, hi)) for start in range(lo, hi + 1, range_ids)]
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if (workers <= 1 or len(ranges) < 2 or hi - lo + 1 < parallel_min
            or store.engine.url.database in (None, "", ":memory:") or not _parallel.acquire(blocking=False)):
        yield from _render_here(store, flt, ranges, page)
        return
    try:
        done = yield from _render_in_workers(store, flt, ranges, page, workers)
    finally:
        _parallel.release()
    if done < len(ranges):
        yield from _render_here(store, flt, ranges[done:], page)


def _id_bounds(store: Store, flt: AuditFilter) -> tuple[int, int] | None:
    stmt = flt.apply(cast("Select[Any]", select(func.min(AuditEvent.id), func.max(AuditEvent.id))))
    with store.engine.connect() as conn:
        low, high = conn.execute(stmt).one()
    return None if low is None else (int(low), int(high))


def _render_here(store: Store, flt: AuditFilter, ranges: list[tuple[int, int]], page: int) -> Iterator[CsvPart]:
    with store.engine.connect() as conn, conn.begin():
        renderer = _RangeRenderer(conn, flt, page)
        for lo, hi in ranges:
            yield renderer.render(lo, hi)


def _render_in_workers(store: Store, flt: AuditFilter, ranges: list[tuple[int, int]], page: int, workers: int
                       ) -> Generator[CsvPart, None, int]:
    """Yield the ranges' parts in order as workers render them; return how many were yielded (fewer than
    all only when the workers could not run: the caller renders the rest in process)."""
    url = store.engine.url.render_as_string(hide_password=False)
    pool = ProcessPoolExecutor(max_workers=min(workers, len(ranges)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_open_worker_engine, initargs=(url, os.getpid()))
    todo = iter(ranges)
    pending: collections.deque[Future[CsvPart]] = collections.deque()
    done = 0
    try:
        for lo, hi in itertools.islice(todo, 2 * workers):
            pending.append(pool.submit(_render_range, flt, lo, hi, page))
        while pending:
            part = pending.popleft().result()
            following = next(todo, None)
            if following is not None:
                pending.append(pool.submit(_render_range, flt, *following, page))
            yield part
            done += 1
    except BrokenProcessPool:
        # e.g. embedded in a program whose __main__ cannot be re-imported by a spawned worker
        log.warning("audit export workers could not run; exporting the rest in one process")
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
    return done


def _open_worker_engine(url: str, parent_pid: int) -> None:
    """Worker process start: die with the exporting process, one engine for every range this worker renders."""
    global _worker_engine
    die_with_parent(parent_pid)
    _worker_engine = make_engine(url)


def _render_range(flt: AuditFilter, lo: int, hi: int, page: int) -> CsvPart:
    """Worker entry: one range, on this worker's engine."""
    if _worker_engine is None:
        raise RuntimeError("the export worker has no engine (started without _open_worker_engine)")
    with _worker_engine.connect() as conn, conn.begin():
        return _RangeRenderer(conn, flt, page).render(lo, hi)
