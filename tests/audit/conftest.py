"""Helpers for the audit tests: a signer, events written through the real writer, and tampering
"as the database owner" (SQLite: the append-only triggers dropped; PostgreSQL: the superuser the
tests connect as, with ``session_replication_role = replica`` so triggers do not fire)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import Connection, delete, select, text, update

from appliance.audit.chain import COLUMNS
from appliance.audit.checkpoints import Signer, write_checkpoint
from appliance.audit.export import CSV_COLUMNS, AuditFilter, escape_row, iter_rows
from appliance.audit.writer import AuditRecord, append
from appliance.store.models import AuditChainHead, AuditEvent
from appliance.store.session import Store

APPLIANCE_ID = "test-appliance"
TRIGGERS = [
    (f"{table}_no_{verb.lower()}", f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                                   f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")
    for table in ("audit_events", "audit_checkpoints") for verb in ("UPDATE", "DELETE")
]


@pytest.fixture
def signer() -> Signer:
    return Signer.from_seed(os.urandom(32))


def record(i: int, **fields: Any) -> AuditRecord:
    values: dict[str, Any] = {
        "action": "employees.read", "actor_type": "user", "user_id": 1 + i % 3, "resource_type": "employees",
        "resource_id": str(i), "ip_address": "10.0.0.7", "request_id": f"req-{i:06d}", "method": "GET",
        "path": f"/api/v1/employees/{i}", "status": 200, "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "detail": "",
    }
    values.update(fields)
    return AuditRecord(**values)


def add_events(store: Store, count: int, *, start: int = 0, **fields: Any) -> list[int]:
    with store.unit_of_work() as session:
        return append(session, [record(start + i, **fields) for i in range(count)])


def add_records(store: Store, records: Sequence[AuditRecord]) -> list[int]:
    with store.unit_of_work() as session:
        return append(session, list(records))


def checkpoint(store: Store, signer: Signer, kind: str = "periodic", now: dt.datetime | None = None) -> int:
    with store.unit_of_work() as session:
        return int(write_checkpoint(session, signer, kind, APPLIANCE_ID, now=now).id)


def head(store: Store) -> tuple[int, str, int]:
    with store.read() as session:
        row = session.execute(select(AuditChainHead)).scalar_one()
        return int(row.last_id), row.last_hash, int(row.purged_through_id)


def event_row(store: Store, event_id: int) -> dict[str, Any]:
    with store.read() as session:
        row = session.execute(select(*[getattr(AuditEvent, c) for c in (*COLUMNS, "hash")])
                              .where(AuditEvent.id == event_id)).one()
        return dict(zip((*COLUMNS, "hash"), row, strict=True))


def reference_csv(store: Store, flt: AuditFilter) -> bytes:
    """The CSV as the csv module writes it from the typed rows: what every export must equal byte for byte."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    with store.read() as session:
        writer.writerows(escape_row(row) for row in iter_rows(session, flt))
    return buffer.getvalue().encode("utf-8")


class Owner:
    """Runs statements with the append-only protection out of the way, as the database owner could."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def run(self, *statements: Any) -> None:
        with self.store.engine.begin() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                for name, _sql in TRIGGERS:
                    conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
            else:
                conn.execute(text("SET LOCAL session_replication_role = replica"))
            for statement in statements:
                self._execute(conn, statement)
            if sqlite:
                for _name, sql in TRIGGERS:
                    conn.execute(text(sql))

    @staticmethod
    def _execute(conn: Connection, statement: Any) -> None:
        conn.execute(text(statement) if isinstance(statement, str) else statement)

    def edit(self, event_id: int, **values: Any) -> None:
        self.run(update(AuditEvent).where(AuditEvent.id == event_id).values(**values))

    def delete_events(self, *ids: int) -> None:
        self.run(delete(AuditEvent).where(AuditEvent.id.in_(ids)))

    def swap(self, a: int, b: int) -> None:
        """Exchange every column but the id of events a and b (a reordering)."""
        row_a, row_b = event_row(self.store, a), event_row(self.store, b)
        for row in (row_a, row_b):
            del row["id"]
        self.run(update(AuditEvent).where(AuditEvent.id == a).values(**row_b),
                 update(AuditEvent).where(AuditEvent.id == b).values(**row_a))

    def truncate_tail(self, keep_through: int, *, rewind_head: bool = True) -> None:
        statements: list[Any] = [delete(AuditEvent).where(AuditEvent.id > keep_through)]
        if rewind_head:
            kept = event_row(self.store, keep_through)
            statements.append(update(AuditChainHead).where(AuditChainHead.id == 1).values(
                last_id=keep_through, last_hash=kept["hash"]))
        self.run(*statements)


@pytest.fixture
def owner(store: Store) -> Owner:
    return Owner(store)


@pytest.fixture
def kek_env(monkeypatch: pytest.MonkeyPatch) -> str:
    import base64
    import secrets

    name = f"VIGATRA_TEST_KEK_{secrets.token_hex(4).upper()}"
    monkeypatch.setenv(name, base64.b64encode(secrets.token_bytes(32)).decode())
    return name
