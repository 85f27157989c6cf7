"""The hash chain over audit events.

Each event stores ``prev_hash`` (the hash of the event before it; 64 zeros for the first) and
``hash = SHA-256(canonical(event))`` where the canonical form covers every column but ``hash``
itself, in a fixed order, each value length-prefixed so no two different rows encode alike.
Timestamps are UTC with millisecond precision, which both databases store exactly.

This module is pure: export verification uses it on another machine with no database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

GENESIS = "0" * 64

# Every column of audit_events except ``hash``, in chain order. Adding a column means a new
# CHAIN_VERSION; verification knows each version's column list.
COLUMNS: tuple[str, ...] = (
    "id", "timestamp", "actor_type", "user_id", "api_key_id", "action", "resource_type", "resource_id",
    "ip_address", "request_id", "method", "path", "status", "user_agent", "outcome", "detail", "prev_hash",
)
CHAIN_VERSION = 1


def format_timestamp(value: dt.datetime) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-29T15:06:44.549Z."""
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def stamp_from_sqlite(value: Any) -> str | None:
    """The chain's text for a timestamp as SQLAlchemy stores it in SQLite ("YYYY-MM-DD HH:MM:SS.ffffff",
    UTC) without parsing it; None for anything else (the caller then reads it through the model)."""
    if value.__class__ is str and len(value) == 26 and value[10] == " ":
        return f"{value[:10]}T{value[11:23]}Z"
    return None


def truncate_ms(value: dt.datetime) -> dt.datetime:
    return value.replace(microsecond=(value.microsecond // 1000) * 1000)


def _text(value: Any) -> str:
    if value.__class__ is str:  # most values, and a timestamp already in chain text (verification, CSV)
        return value
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    return str(value)


def canonical(values: Sequence[Any]) -> bytes:
    """Length-prefixed encoding of the COLUMNS values (None -> '-'). Integers may come as int or as their
    decimal text, the timestamp as a datetime or as its chain text: each encodes the same."""
    return "".join(["-;" if value is None else f"{len(text := _text(value))}:{text};" for value in values]
                   ).encode("utf-8")


def event_hash(values: Sequence[Any]) -> str:
    return hashlib.sha256(canonical(values)).hexdigest()
