"""Writing what an evaluation found, in bulk: alerts (one per rule and record, the unique (rule_id,
record_key) constraint deciding every race) and the rows that go with them.

Core inserts on the table, never the ORM's unit of work: a list change can raise tens of thousands of
alerts in one evaluation.

On PostgreSQL the alerts are not inserted with RETURNING: SQLAlchemy sends a bulk INSERT ... RETURNING
as multi-row VALUES statements with one placeholder per value, and psycopg rewrites the placeholders of
each such statement in Python (measured: ~100 µs per alert, more than everything else the evaluation
does with it). Instead the ids are taken from the table's sequence first, the rows inserted with them
(one prepared statement, executed per row in a pipeline), and the ids found in the table afterwards are
the alerts this insert created (a row skipped by ON CONFLICT leaves its id unused: ids come from the
sequence, so no other writer has them). Rows prepared for the driver go by COPY (below): straight into the
table when no key exists (then every id was created), else through a temporary table.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import JSON, Dialect, Table, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from appliance.services.rules.judge import Finding
from appliance.store.base import utcnow
from appliance.store.models import Alert, EvaluationMark


def table(model: Any) -> Table:
    found: Table = model.__table__
    return found


# Statements built once per dialect: building one costs more than executing it, and a sync's evaluation
# runs several.

@functools.cache
def _new_alerts(dialect: str, returning: bool) -> Any:
    module: Any = postgresql if dialect == "postgresql" else sqlite
    alerts = table(Alert)
    stmt = module.insert(alerts).on_conflict_do_nothing(index_elements=["rule_id", "record_key"])
    return stmt.returning(alerts.c.id, alerts.c.severity, alerts.c.rule_id) if returning else stmt


@functools.cache
def _alert_ids() -> Any:
    """PostgreSQL: ``n`` ids from the alerts' sequence."""
    return select(func.nextval(func.pg_get_serial_sequence("alerts", "id"))).select_from(
        func.generate_series(1, bindparam("n")))


@functools.cache
def _alerts_between() -> Any:
    alerts = table(Alert)
    return select(alerts.c.id, alerts.c.severity, alerts.c.rule_id).where(
        alerts.c.id.between(bindparam("low"), bindparam("high")))


def alert_rows(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """The rows of the alerts these findings raise, one per (rule, record)."""
    now = utcnow()
    rows = []
    seen: set[tuple[int, str]] = set()
    for f in findings:
        ident = (f.rule.id, f.record_key)
        if ident in seen:
            continue
        seen.add(ident)
        detail: dict[str, Any] = {"rule": {"id": f.rule.id, "name": f.rule.name, "kind": f.rule.kind,
                                           "version": f.rule.version}, "records": f.records}
        if f.entries:
            detail["list"] = {"id": f.entries[0].list_id, "name": f.rule.list_name}
            detail["entries"] = [{"id": e.id, "type": e.type, "value": e.value} for e in f.entries]
        detail.update(f.extra)
        rows.append({"employee_id": f.employee_id, "connection_id": f.connection_id, "kind": f.rule.alert_kind,
                     "severity": f.rule.severity, "status": "open", "title": f.title[:300], "detail": detail,
                     "rule_id": f.rule.id, "rule_version": f.rule.version,
                     "list_entry_id": f.entries[0].id if f.entries else None, "record_key": f.record_key,
                     "occurred_at": f.occurred_at, "created_at": now, "updated_at": now, "resolution": "",
                     "reason": ""})
    return rows


# -- rows prepared for the driver ------------------------------------------------------------------------
# A full evaluation inserts hundreds of thousands of rows (alerts, their "created" events, records that could
# not be valued). Through SQLAlchemy's executemany each row's parameters are gathered and each value bound
# through its type (JSON encoded, times converted) in the writing process: measured, most of that process's
# CPU. Prepared here instead — the same conversion, each column type's own bind processing for the dialect —
# wherever the rows are made (a worker process in a parallel evaluation, see parallel.py), they are inserted
# by the driver's executemany as they are.

ALERT_COLUMNS = ("employee_id", "connection_id", "kind", "severity", "status", "title", "detail", "rule_id",
                 "rule_version", "list_entry_id", "record_key", "occurred_at", "created_at", "updated_at",
                 "resolution", "reason")
EVENT_COLUMNS = ("alert_id", "at", "actor_id", "actor_label", "action", "detail")
UNVALUED_COLUMNS = ("rule_id", "record_key", "employee_id", "reason", "first_seen_at", "checked_at")
_SEVERITY, _RULE = ALERT_COLUMNS.index("severity"), ALERT_COLUMNS.index("rule_id")


def prepared(dialect: Dialect, model: Any, columns: Sequence[str], rows: Iterable[dict[str, Any]]
             ) -> list[tuple[Any, ...]]:
    """Rows as the driver takes them: each value bound as its column's type binds it on this dialect."""
    found = table(model).c
    processors = [(i, process) for i, name in enumerate(columns)
                  if (process := _processor(found[name].type, dialect)) is not None]
    take = operator.itemgetter(*columns)
    out = []
    for row in rows:
        values = list(take(row))
        for i, process in processors:
            values[i] = process(values[i])
        out.append(tuple(values))
    return out


def bound(dialect: Dialect, model: Any, column: str, value: Any) -> Any:
    """One value as its column binds it (a value every row of an insert shares)."""
    process = _processor(table(model).c[column].type, dialect)
    return value if process is None else process(value)


def _processor(column_type: Any, dialect: Dialect) -> Any:
    if dialect.name == "postgresql" and isinstance(column_type, JSON):
        return json.dumps  # its text, as COPY takes it (see _copy)
    return column_type.dialect_impl(dialect).bind_processor(dialect)


@functools.cache
def _insert_sql(model: Any, columns: tuple[str, ...], *, skip_existing: bool = False) -> str:
    """SQLite: INSERT for prepared rows; ``skip_existing``: a row whose (rule, record) exists is skipped. The
    names are the table's and the columns named in this module (never input)."""
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    conflict = " ON CONFLICT (rule_id, record_key) DO NOTHING" if skip_existing else ""
    return f"INSERT INTO {table(model).name} ({names}) VALUES ({marks}){conflict}"  # noqa: S608


def _execute_prepared(session: Session, model: Any, columns: tuple[str, ...], values: Sequence[tuple[Any, ...]], *,
                      with_id: bool = False, skip_existing: bool = False) -> bool:
    """Insert the rows; returns whether every row was inserted (``skip_existing``: none was skipped, as far as
    SQLite's executemany or PostgreSQL's COPY tell; False: some may have been)."""
    dialect = session.get_bind().dialect
    connection = session.connection()
    names = (("id",) if with_id else ()) + columns
    if dialect.name != "postgresql":
        connection.exec_driver_sql(_insert_sql(model, names, skip_existing=skip_existing), list(values))
        return not skip_existing
    if skip_existing:
        # Nearly always nothing is skipped (the evaluation does not judge what is alerted or recorded already):
        # COPY straight into the table, in a savepoint; a row whose key exists fails it, and then the rows go
        # through a temporary table and INSERT ... ON CONFLICT DO NOTHING (twice the server's work).
        from psycopg.errors import UniqueViolation

        try:
            with connection.begin_nested():
                _copy(connection.connection.driver_connection, table(model).name, names, values)
            return True
        except UniqueViolation:
            _copy_skipping_existing(connection.connection.driver_connection, table(model).name, names, values)
            return False
    _copy(connection.connection.driver_connection, table(model).name, names, values)
    return True


def _copy(driver: Any, target: str, names: tuple[str, ...], values: Sequence[tuple[Any, ...]], *,
          types_of: str | None = None) -> None:
    """PostgreSQL: COPY, the server's bulk path (a statement per row, or a multi-row one with its values
    escaped by the driver in Python, cost more than the rows themselves), in the binary format where every
    column's type has one the driver writes (measured: a tenth of the client's CPU of the text format, whose
    escaping is per value). ``types_of``: the table whose columns' types ``target`` has (a staging copy). The
    names are the table's and the columns named in this module (never input); JSON values arrive as text."""
    with driver.cursor() as cursor:
        types = _binary_types(cursor, types_of or target, names)
        binary = " (FORMAT BINARY)" if types else ""
        with cursor.copy(f"COPY {target} ({', '.join(names)}) FROM STDIN{binary}") as copy:
            if types:
                copy.set_types(types)
            for row in values:
                copy.write_row(row)


# PostgreSQL type oids: text, varchar and json take their text as their binary form; these others are written
# by the driver's binary dumpers. A column of any other type makes the COPY use the text format.
_TEXT = 25
_AS_TEXT = frozenset({25, 1043, 114})
_OWN_BINARY = frozenset({16, 20, 21, 23, 1184, 1700})  # bool, int8, int2, int4, timestamptz, numeric
_TYPES: dict[tuple[str, tuple[str, ...]], list[int] | None] = {}


def _binary_types(cursor: Any, target: str, names: tuple[str, ...]) -> list[int] | None:
    """The binary COPY types of these columns as the server has them (read once per table and columns)."""
    key = (target, names)
    if key not in _TYPES:
        cursor.execute("SELECT attname, atttypid::int8 FROM pg_attribute WHERE attrelid = to_regclass(%s) "
                       "AND attnum > 0 AND NOT attisdropped", (target,))
        found = {str(name): int(oid) for name, oid in cursor.fetchall()}
        oids = [found.get(name, 0) for name in names]
        _TYPES[key] = [_TEXT if oid in _AS_TEXT else oid for oid in oids] \
            if all(oid in _AS_TEXT or oid in _OWN_BINARY for oid in oids) else None
    return _TYPES[key]


def _copy_skipping_existing(driver: Any, target: str, names: tuple[str, ...], values: Sequence[tuple[Any, ...]]
                            ) -> None:
    """``_copy`` that skips a row whose (rule_id, record_key) exists: through a temporary table of this
    transaction, then INSERT ... ON CONFLICT DO NOTHING."""
    columns = ", ".join(names)
    staging = f"staging_{target}"
    with driver.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} ON COMMIT DROP AS "  # noqa: S608
                       f"SELECT {columns} FROM {target} WITH NO DATA")
        cursor.execute(f"TRUNCATE {staging}")
    _copy(driver, staging, names, values, types_of=target)
    with driver.cursor() as cursor:
        cursor.execute(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {staging} "  # noqa: S608
                       "ON CONFLICT (rule_id, record_key) DO NOTHING")


def insert_prepared_alerts(session: Session, values: Sequence[tuple[Any, ...]]) -> list[tuple[int, str, int]]:
    """``insert_alerts`` for rows prepared with ALERT_COLUMNS: (id, severity, rule id) of the alerts created.
    SQLite gives a new row the next id after the largest (the table's ids are its row ids, and this unit of
    work is the only writer), so the alerts created are those above the largest id before; PostgreSQL's ids
    come from the sequence first, as in ``insert_alerts``."""
    if not values:
        return []
    session.flush()  # rows the unit of work added (a rule, a list entry) before the alerts that name them
    dialect = session.get_bind().dialect.name
    connection = session.connection()
    alerts = table(Alert)
    if dialect == "postgresql":
        ids = [int(i) for i in connection.execute(_alert_ids(), {"n": len(values)}).scalars()]
        if _execute_prepared(session, Alert, ALERT_COLUMNS, [(alert_id, *row) for alert_id, row in
                                                             zip(ids, values, strict=True)], with_id=True,
                             skip_existing=True):
            return [(alert_id, str(row[_SEVERITY]), int(row[_RULE])) for alert_id, row in zip(ids, values, strict=True)]
        ours = set(ids)
        return [(int(i), str(s), int(r)) for i, s, r in connection.execute(
            _alerts_between(), {"low": min(ids), "high": max(ids)}) if i in ours]
    before = int(connection.execute(select(func.max(alerts.c.id))).scalar() or 0)
    _execute_prepared(session, Alert, ALERT_COLUMNS, values, skip_existing=True)
    return [(int(i), str(s), int(r)) for i, s, r in connection.execute(
        select(alerts.c.id, alerts.c.severity, alerts.c.rule_id).where(alerts.c.id > before))]


def insert_prepared(session: Session, model: Any, columns: tuple[str, ...], values: Sequence[tuple[Any, ...]], *,
                    skip_existing: bool = False) -> None:
    """Insert rows prepared for the driver (events, unvalued records) in these columns."""
    if values:
        _execute_prepared(session, model, columns, values, skip_existing=skip_existing)


def insert_alerts(session: Session, rows: Sequence[dict[str, Any]]) -> list[tuple[int, str, int]]:
    """Insert alert rows, skipping those whose (rule, record) exists; returns (id, severity, rule id) of the
    alerts created, in no particular order."""
    if not rows:
        return []
    session.flush()  # rows the unit of work added (a rule, a list entry) before the alerts that name them
    dialect = session.get_bind().dialect.name
    connection = session.connection()
    if dialect != "postgresql" or len(rows) == 1:
        created = connection.execute(_new_alerts(dialect, True), list(rows) if len(rows) > 1 else rows[0]).all()
        return [(int(i), str(s), int(r)) for i, s, r in created]
    ids = [int(i) for i in connection.execute(_alert_ids(), {"n": len(rows)}).scalars()]
    connection.execute(_new_alerts(dialect, False), [{**row, "id": alert_id} for row, alert_id in zip(rows, ids,
                                                                                                        strict=True)])
    ours = set(ids)
    return [(int(i), str(s), int(r)) for i, s, r in connection.execute(
        _alerts_between(), {"low": min(ids), "high": max(ids)}) if i in ours]


@functools.cache
def _mark_upsert(dialect: str) -> Any:
    module: Any = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table(EvaluationMark))
    return stmt.on_conflict_do_update(index_elements=["connection_id"], set_={
        name: stmt.excluded[name] for name in ("transaction_id", "position_id", "balance_id", "updated_at")})


def move_mark(session: Session, connection_id: int, values: dict[str, Any]) -> None:
    """Where the evaluation of a connection's records stopped (transaction, position, balance ids)."""
    session.execute(_mark_upsert(session.get_bind().dialect.name), {"connection_id": connection_id, **values})


def move_marks(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """``move_mark`` for several connections (rows with ``connection_id`` and the values), in one statement."""
    if rows:
        session.connection().execute(_mark_upsert(session.get_bind().dialect.name), list(rows))
