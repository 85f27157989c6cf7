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
from collections.abc import Mapping, Sequence
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


def parse_timestamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def truncate_ms(value: dt.datetime) -> dt.datetime:
    return value.replace(microsecond=(value.microsecond // 1000) * 1000)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    return str(value)


def canonical(values: Sequence[Any]) -> bytes:
    """Length-prefixed encoding of the COLUMNS values (None -> '-')."""
    parts = []
    for value in values:
        text = _text(value)
        if text is None:
            parts.append("-;")
        else:
            parts.append(f"{len(text)}:{text};")
    return "".join(parts).encode("utf-8")


def event_hash(values: Sequence[Any]) -> str:
    return hashlib.sha256(canonical(values)).hexdigest()


def row_values(row: Mapping[str, Any]) -> list[Any]:
    return [row[name] for name in COLUMNS]


class ChainBreak(Exception):
    """The chain does not verify at ``event_id`` for ``reason``."""

    def __init__(self, event_id: int | None, reason: str) -> None:
        super().__init__(f"audit chain broken at event {event_id}: {reason}" if event_id is not None else reason)
        self.event_id = event_id
        self.reason = reason


class ChainVerifier:
    """Feed events in id order; raises ChainBreak at the first bad link."""

    def __init__(self, *, expected_prev: str = GENESIS, expected_next_id: int | None = None) -> None:
        self.expected_prev = expected_prev
        self.expected_next_id = expected_next_id
        self.count = 0
        self.last_id: int | None = None

    def feed(self, values: Sequence[Any], stored_hash: str) -> None:
        event_id = int(values[0])
        if self.expected_next_id is not None and event_id != self.expected_next_id:
            if event_id > self.expected_next_id:
                raise ChainBreak(self.expected_next_id,
                                 f"event {self.expected_next_id} is missing (next is {event_id})")
            raise ChainBreak(event_id, "events out of order")
        prev = values[-1]
        if prev != self.expected_prev:
            raise ChainBreak(event_id, "prev_hash does not match the previous event's hash")
        computed = event_hash(values)
        if computed != stored_hash:
            raise ChainBreak(event_id, "the event's contents do not match its hash")
        self.expected_prev = stored_hash
        self.expected_next_id = event_id + 1
        self.last_id = event_id
        self.count += 1
