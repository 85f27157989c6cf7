"""Records a threshold rule could not value, kept once per (rule, record) and never passed or failed
silently: an evaluation that cannot value a record records it; one that values a recorded record settles
it (``valued_at``); one that cannot value a settled record any more (its price gone) opens it again.

What an evaluation found is compared with what is recorded by (rule, record) key, through the table's
unique index: a read, so a worker process of a whole-history evaluation does it for its own employees
(parallel.py) and sends back only what changes. The writing itself is the caller's (``write``); the insert
skips a key recorded meanwhile (the unique key decides, as for alerts). A worker compares with what is
committed: a record the caller's own unit of work recorded is found by the insert, not by the comparison.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from appliance.services.rules import storing
from appliance.services.rules.facts import chunks
from appliance.services.rules.judge import Unvalued
from appliance.store.base import utcnow
from appliance.store.models import UnvaluedRecord
from appliance.store.params import dialect_of, one_of

Key = tuple[int, str]  # (rule id, record key)
# Up to this many keys are looked up one by one in the unique index (after a sync: a few); more (a batch of a
# whole history: ~100,000) and the employees' recorded rows are read in one scan instead: measured on
# PostgreSQL, ~10 µs of the server's per key looked up against ~0.2 µs per row scanned.
KEY_PROBES = 2000
Row = tuple[int, str, int, str]  # rule id, record key, employee id, reason: plain, sent between processes


@dataclass
class Settlement:
    """What changes in the records that could not be valued, for one batch of employees."""

    new: list[Row] = field(default_factory=list)  # could not be valued, not recorded before
    reopened: list[Key] = field(default_factory=list)  # settled before, cannot be valued now
    settled: list[Key] = field(default_factory=list)  # recorded and open, valued now
    found: int = 0  # records that could not be valued (recorded before or not)


def any_recorded(session: Session) -> bool:
    """Whether any record was ever recorded as unvalued (if not, there is nothing to compare with)."""
    return session.execute(select(UnvaluedRecord.id).limit(1)).first() is not None


def sort_out(session: Session, unvalued: Sequence[Unvalued], valued: Sequence[Key], *, compare: bool,
             employee_ids: Iterable[int] = ()) -> Settlement:
    """Compare what an evaluation found (about these employees' records) with what is recorded. ``compare``
    False: nothing is recorded (see ``any_recorded``), so every unvalued record is new and nothing is settled
    or opened again."""
    if not compare:
        return Settlement(new=[_row(u) for u in unvalued], found=len(unvalued))
    keys = [(u.rule_id, u.record_key) for u in unvalued] + list(valued)
    employees = sorted(set(employee_ids))
    recorded = _recorded(session, keys) if len(keys) <= KEY_PROBES or not employees else \
        _recorded_of(session, employees, set(keys))
    return Settlement(new=[_row(u) for u in unvalued if (u.rule_id, u.record_key) not in recorded],
                      reopened=[(u.rule_id, u.record_key) for u in unvalued if recorded.get((u.rule_id, u.record_key))],
                      settled=[k for k in valued if recorded.get(k) is False], found=len(unvalued))


def _row(u: Unvalued) -> Row:
    return (u.rule_id, u.record_key, u.employee_id, u.reason)


def write(session: Session, settlement: Settlement) -> None:
    """Store a settlement: new records (a key recorded meanwhile is skipped), and the times of those opened
    again or settled."""
    now = utcnow()
    if settlement.new:
        at = storing.bound(session.get_bind().dialect, UnvaluedRecord, "first_seen_at", now)
        storing.insert_prepared(session, UnvaluedRecord, storing.UNVALUED_COLUMNS, [
            (*row, at, at) for row in settlement.new],
            skip_existing=True)
    connection = session.connection()
    for keys, valued in ((settlement.reopened, False), (settlement.settled, True)):
        if keys:
            connection.execute(_mark_statement(valued), [
                {"r": rule_id, "k": key, "now": now} for rule_id, key in keys])


def _recorded(session: Session, keys: Iterable[Key]) -> dict[Key, bool]:
    """(rule, record) -> whether it was settled (valued later), for the keys recorded."""
    by_rule: dict[int, list[str]] = defaultdict(list)
    for rule_id, key in set(keys):
        by_rule[rule_id].append(key)
    out: dict[Key, bool] = {}
    connection = session.connection()
    statement = _recorded_statement(dialect_of(session))
    for rule_id, record_keys in by_rule.items():
        for part in chunks(sorted(record_keys), 900):
            out.update(((rule_id, str(k)), bool(settled)) for k, settled in connection.execute(
                statement, {"rule": rule_id, "keys": part}))
    return out


def _recorded_of(session: Session, employee_ids: Sequence[int], wanted: set[Key]) -> dict[Key, bool]:
    """``_recorded`` for many keys, all about these employees: their recorded rows read whole."""
    out: dict[Key, bool] = {}
    connection = session.connection()
    statement = _employees_statement(dialect_of(session))
    for part in chunks(list(employee_ids), 900):
        for rule_id, key, settled in connection.execute(statement, {"employees": part}):
            if (rule_id, key) in wanted:
                out[(int(rule_id), str(key))] = bool(settled)
    return out


@functools.cache
def _employees_statement(dialect: str) -> Any:
    return select(UnvaluedRecord.rule_id, UnvaluedRecord.record_key, UnvaluedRecord.valued_at.is_not(None)).where(
        one_of(UnvaluedRecord.employee_id, "employees", dialect))


@functools.cache
def _recorded_statement(dialect: str) -> Any:
    return select(UnvaluedRecord.record_key, UnvaluedRecord.valued_at.is_not(None)).where(
        UnvaluedRecord.rule_id == bindparam("rule"), one_of(UnvaluedRecord.record_key, "keys", dialect))


@functools.cache
def _mark_statement(valued: bool) -> Any:
    return update(UnvaluedRecord).where(UnvaluedRecord.rule_id == bindparam("r"),
                                        UnvaluedRecord.record_key == bindparam("k")).values(
        valued_at=bindparam("now") if valued else None, checked_at=bindparam("now"))
