"""Reading the trail out: filtered queries, streamed CSV (constant memory), formula-safe cells.

The CSV's first six columns are exactly ``user_id,action,resource_type,resource_id,ip_address,
timestamp`` (what a regulator asks for), followed by every other column, so an export can be
re-verified against the chain. Cells that a spreadsheet would treat as a formula (leading ``=``,
``+``, ``-``, ``@``, tab, carriage return or NUL) are prefixed with ``'`` (SECURITY.md).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Select, String, literal_column, select, type_coerce
from sqlalchemy.orm import Session

from appliance.audit.chain import format_timestamp, stamp_from_sqlite
from appliance.store.models import AuditEvent

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


def escape_row(row: tuple[Any, ...]) -> list[Any]:
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


# The timestamp as the chain's text, computed by PostgreSQL (UTC, milliseconds truncated like
# chain.format_timestamp). SQLite hands back SQLAlchemy's stored text instead; chain.stamp_from_sqlite
# turns that into the chain's text without parsing it.
PG_STAMP_SQL = "to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"


def iter_csv_rows(session: Session, flt: AuditFilter, *, batch: int = 20000) -> Iterator[tuple[Any, ...]]:
    """:func:`iter_rows` for exports: the same events in the same order, with the timestamp already the
    chain's text and no per-value type processing (exports run to millions of rows)."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    stamp = type_coerce(AuditEvent.timestamp, String) if sqlite else literal_column(PG_STAMP_SQL)
    columns = [stamp.label("timestamp") if name == "timestamp" else getattr(AuditEvent, name) for name in CSV_COLUMNS]
    id_at = CSV_COLUMNS.index("id")
    after = flt.after_id
    while True:
        stmt = replace(flt, after_id=after).apply(select(*columns)).order_by(AuditEvent.id).limit(batch)
        rows = session.connection().execute(stmt).all()  # Core rows: no ORM loading step
        for row in rows:
            if not sqlite:
                yield tuple(row)
                continue
            text = stamp_from_sqlite(row[_TIMESTAMP])
            if text is None:  # not what SQLAlchemy writes: let the model's type read it
                typed = session.execute(select(AuditEvent.timestamp).where(AuditEvent.id == row[id_at])).scalar_one()
                text = format_timestamp(typed)
            yield (*row[:_TIMESTAMP], text, *row[_TIMESTAMP + 1:])
        if len(rows) < batch:
            return
        after = rows[-1][id_at]


_SEPARATORS = len(CSV_COLUMNS) - 1


def _lines(rows: Iterable[tuple[Any, ...]], fallback: Any, buffer: io.StringIO) -> Iterator[str]:
    """CSV lines exactly as ``csv.writer`` (QUOTE_MINIMAL, CRLF) writes them, joined by hand when no cell
    needs quoting — no comma, quote, CR or LF in any cell, which is every line but rare ones (a user
    agent with a comma, a detail with quotes); those go through the csv module."""
    for row in rows:
        cells = ["" if v is None else v if v.__class__ is str else str(v) for v in escape_row(row)]
        line = ",".join(cells)
        if line.count(",") == _SEPARATORS and '"' not in line and "\n" not in line and "\r" not in line:
            yield line + "\r\n"
        else:
            fallback.writerow(cells)
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()


def csv_chunks(rows: Iterable[tuple[Any, ...]], *, header: bool = True, rows_per_chunk: int = 2000
               ) -> Iterator[str]:
    """The CSV in chunks of ``rows_per_chunk`` lines (constant memory, whatever the number of rows)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    head = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    lines = _lines(rows, writer, buffer)
    while True:
        text = head + "".join(itertools.islice(lines, rows_per_chunk))
        head = ""
        if not text:
            return
        yield text
