"""CSV as compliance officers open it in a spreadsheet and examiners load it in a program: numbers as plain
numbers (never quoted, never in exponent notation), dates and times in ISO 8601 (UTC), booleans as
true/false, and every text cell that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab,
CR, NUL...) prefixed with ``'`` (audit.export.escape_cell, the audit CSV's rule). RFC 4180 quoting, CRLF."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from appliance.audit.chain import format_timestamp
from appliance.audit.export import escape_cell


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return escape_cell(str(value))


def render(rows: Iterable[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return buffer.getvalue().encode("utf-8")
