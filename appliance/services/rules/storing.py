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
sequence, so no other writer has them).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from appliance.store.models import Alert, AlertEvent, EvaluationMark, UnvaluedRecord


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


@functools.cache
def _new_events() -> Any:
    return insert(table(AlertEvent))


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


def insert_events(session: Session, events: Sequence[dict[str, Any]]) -> None:
    if events:
        session.connection().execute(_new_events(), list(events))


@functools.cache
def _new_unvalued(dialect: str) -> Any:
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table(UnvaluedRecord)).on_conflict_do_nothing(index_elements=["rule_id", "record_key"])


def insert_unvalued(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Records that could not be valued, once per (rule, record)."""
    if rows:
        session.execute(_new_unvalued(session.get_bind().dialect.name), list(rows))


@functools.cache
def _mark_upsert(dialect: str) -> Any:
    module: Any = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table(EvaluationMark))
    return stmt.on_conflict_do_update(index_elements=["connection_id"], set_={
        name: stmt.excluded[name] for name in ("transaction_id", "position_id", "balance_id", "updated_at")})


def move_mark(session: Session, connection_id: int, values: dict[str, Any]) -> None:
    """Where the evaluation of a connection's records stopped (transaction, position, balance ids)."""
    session.execute(_mark_upsert(session.get_bind().dialect.name), {"connection_id": connection_id, **values})
