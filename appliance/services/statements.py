"""Importing venue statement exports: history the API cannot give, recorded beside what the sync read.

- The file is read by ``venues.statements`` (Coinbase, Kraken and Binance exports; all rows or none).
- Every record it holds that is already stored is skipped: by id where the export carries the API's ids
  (Kraken), else by what the record is — same stream, kind, asset and amount, within the second (statements
  print times to the second; the API to the millisecond) — so a statement that overlaps synced trades adds only
  what the API did not give.
- Added records are marked with their origin: ``provenance = "statement"`` and the import they came from (a
  ``StatementImport`` row: file name, SHA-256, covered period, who imported it, what it added).
- The standing gaps the statement covers are closed (``history_limit``: history older than the API serves;
  ``venue_limitation``: a stream the key cannot read), or shrunk when it covers only part of them. The covered
  period is the span of the statement's rows, or what the importer states (``covered_from``/``covered_to``:
  the period the export was generated for, which may reach before its first row).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.errors import Invalid, NotFound
from appliance.services.sync.writes import insert_records
from appliance.store.base import utcnow
from appliance.store.models import Connection, CoverageInterval, StatementImport, Transaction
from appliance.venues import statements as formats
from appliance.venues.base import TxRecord

# Gaps a statement can fill: history the API does not reach, streams the key cannot read, records not read yet.
FILLABLE = ("history_limit", "venue_limitation", "not_read")
SAME_SECOND = dt.timedelta(seconds=1)


@dataclass(frozen=True)
class ImportResult:
    statement_import: StatementImport
    added: int
    duplicates: int
    skipped: int
    gaps_closed: int
    gaps_shrunk: int
    employee_id: int

    def lines(self) -> list[str]:
        row = self.statement_import
        return [f"statement import {row.id}: {row.format}, {row.rows} row(s): {self.added} added, {self.duplicates} "
                f"already recorded, {self.skipped} not recorded (no matching stream)",
                f"covered {row.covered_from.isoformat()} to {row.covered_to.isoformat()}; coverage gaps closed: "
                f"{self.gaps_closed}, shortened: {self.gaps_shrunk}"]


def import_statement(session: Session, connection_id: int, data: bytes, *, file_name: str, imported_by: str,
                     covered_from: dt.datetime | None = None, covered_to: dt.datetime | None = None) -> ImportResult:
    connection = session.get(Connection, connection_id)
    if connection is None:
        raise NotFound("not found")
    if connection.kind != "exchange":
        raise Invalid("statements are imported for exchange connections only", field="connection")
    statement = formats.parse(connection.venue, data)
    assert statement.first is not None and statement.last is not None
    start, end = _covered(statement, covered_from, covered_to)
    row = StatementImport(connection_id=connection.id, format=statement.format, file_name=_file_name(file_name),
                          sha256=hashlib.sha256(data).hexdigest(), covered_from=start, covered_to=end,
                          rows=statement.rows, imported_by=imported_by[:200])
    session.add(row)
    session.flush()
    added = duplicates = 0
    for stream, records in statement.records.items():
        fresh = _not_yet_recorded(session, connection.id, stream, records)
        duplicates += len(records) - len(fresh)
        inserted = insert_records(session, connection.id, stream, fresh, provenance="statement",
                                  statement_import_id=row.id)
        duplicates += len(fresh) - inserted
        added += inserted
    row.added, row.duplicates = added, duplicates
    closed, shrunk = _fill_gaps(session, connection.id, statement.streams, start, end, row)
    session.flush()
    return ImportResult(row, added, duplicates, statement.skipped, closed, shrunk, connection.employee_id)


def list_imports(session: Session, connection_id: int) -> list[StatementImport]:
    return list(session.execute(select(StatementImport).where(StatementImport.connection_id == connection_id)
                                .order_by(StatementImport.id.desc())).scalars())


def _file_name(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in base if ch.isprintable())[:255]


def _covered(statement: formats.Statement, start: dt.datetime | None, end: dt.datetime | None
             ) -> tuple[dt.datetime, dt.datetime]:
    assert statement.first is not None and statement.last is not None
    for value, name in ((start, "covered_from"), (end, "covered_to")):
        if value is not None and value.tzinfo is None:
            raise Invalid(f"{name} must be a UTC time", field=name)
    first = start or statement.first
    last = end or statement.last
    if first > last:
        raise Invalid("the covered period ends before it starts", field="covered_to")
    if statement.first < first or statement.last > last:
        raise Invalid(f"the statement has rows from {statement.first.isoformat()} to {statement.last.isoformat()}, "
                      "outside the period given for it", field="covered_from")
    if last > utcnow() + dt.timedelta(days=1):
        raise Invalid("the covered period ends in the future", field="covered_to")
    return first, last


def _fingerprint(kind: str, asset: str, amount: Decimal) -> tuple[str, str, str]:
    return kind, asset.upper(), format(amount.normalize(), "f")


def _not_yet_recorded(session: Session, connection_id: int, stream: str, records: list[TxRecord]) -> list[TxRecord]:
    """The records no stored row already holds: same id, or same kind, asset and amount within the second."""
    if not records:
        return []
    low = min(r.occurred_at for r in records) - SAME_SECOND
    high = max(r.occurred_at for r in records) + SAME_SECOND
    stored: dict[tuple[str, str, str], list[dt.datetime]] = defaultdict(list)
    ids: set[str] = set()
    for venue_tx_id, kind, asset, amount, occurred in session.execute(select(
            Transaction.venue_tx_id, Transaction.kind, Transaction.asset, Transaction.amount, Transaction.occurred_at)
            .where(Transaction.connection_id == connection_id, Transaction.stream == stream,
                   Transaction.occurred_at >= low, Transaction.occurred_at <= high)):
        ids.add(venue_tx_id)
        stored[_fingerprint(kind, asset, amount)].append(occurred)
    fresh = []
    for record in records:
        if record.venue_tx_id in ids:
            continue
        times = stored.get(_fingerprint(record.kind, record.asset, record.amount), [])
        match = next((t for t in times if abs(t - record.occurred_at) <= SAME_SECOND), None)
        if match is not None:
            times.remove(match)  # one stored row answers for one statement row
            continue
        fresh.append(record)
    return fresh


def _fill_gaps(session: Session, connection_id: int, streams: tuple[str, ...], start: dt.datetime, end: dt.datetime,
               row: StatementImport) -> tuple[int, int]:
    """Close the standing gaps of ``streams`` that [start, end] covers; shorten those it covers the start or the
    end of. A gap the statement covers only the middle of stays as it is (it says so)."""
    closed = shrunk = 0
    now = utcnow()
    note = f"statement import {row.id} ({row.format}) covers {start.isoformat()} to {end.isoformat()}"
    for gap in session.execute(select(CoverageInterval).where(
            CoverageInterval.connection_id == connection_id, CoverageInterval.kind == "gap",
            CoverageInterval.closed_at.is_(None), CoverageInterval.reason.in_(FILLABLE),
            CoverageInterval.stream.in_(streams))).scalars():
        gap_end = gap.end_at or now
        if end < gap.start_at or start > gap_end:
            continue
        if start <= gap.start_at and end >= gap_end:
            gap.end_at, gap.closed_at = gap_end, now
            gap.detail = f"{gap.detail} — filled: {note}"[:4000]
            closed += 1
        elif start <= gap.start_at:
            gap.start_at = end
            gap.detail = f"{gap.detail} — shortened: {note}"[:4000]
            shrunk += 1
        elif end >= gap_end and gap.end_at is not None:
            gap.end_at = start
            gap.detail = f"{gap.detail} — shortened: {note}"[:4000]
            shrunk += 1
        else:
            gap.detail = f"{gap.detail} — partly covered: {note}"[:4000]
    return closed, shrunk


def import_json(row: StatementImport) -> dict[str, Any]:
    return {
        "id": row.id, "connection_id": row.connection_id, "format": row.format, "file_name": row.file_name,
        "sha256": row.sha256, "covered_from": row.covered_from.isoformat(), "covered_to": row.covered_to.isoformat(),
        "rows": row.rows, "added": row.added, "duplicates": row.duplicates, "imported_by": row.imported_by,
        "created_at": row.created_at.isoformat(),
    }
