"""Migrations: one head, empty -> head matches the models, downgrade and upgrade again, both databases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect, text

from appliance.store.base import Base
from appliance.store.migrate import current_revision, downgrade, head_revision, schema_drift, upgrade
from appliance.store.session import make_engine

# Rows written as SQL at an older revision (the models describe the newest one). Ada owns every connection.
_EMPLOYEE = ("INSERT INTO employees (id, name, email, department, status, created_at) "
             "VALUES (1, 'Ada', 'ada@example.com', '', 'active', '2024-01-01 00:00:00')")
_CONNECTION = ("INSERT INTO connections (id, employee_id, kind, venue, label, status, status_reason, address, "
               "key_fingerprint, scope_verified, consecutive_failures, created_at, updated_at) VALUES "
               "({id}, 1, 'exchange', '{venue}', '', '{status}', '', '', '', TRUE, 0, '{created}', '{updated}')")


def _seed(engine: Any, revision: str, rows: tuple[str, ...]) -> None:
    """Upgrade to ``revision`` and write these rows there."""
    upgrade(engine, revision)
    with engine.begin() as conn:
        for row in rows:
            conn.execute(text(row))


def test_single_head() -> None:
    assert head_revision()


def test_upgrade_empty_database_matches_models(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert schema_drift(engine) == []
        tables = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
    finally:
        engine.dispose()


def test_downgrade_then_upgrade_again(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        upgrade(engine)
        downgrade(engine, "base")
        assert current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(engine)
        assert schema_drift(engine) == []
    finally:
        engine.dispose()


def test_transfer_status_migration_keeps_stored_values(empty_db_url: str) -> None:
    """0023 adds columns to ``transactions``: on SQLite a table rebuild would drop the old table, and its
    implicit DELETE cascades to transaction_values — every stored value gone. Rows survive both ways."""
    engine = make_engine(empty_db_url)
    rows = (
        _EMPLOYEE,
        _CONNECTION.format(id=1, venue="binance", status="active", created="2024-01-01 00:00:00",
                           updated="2024-01-01 00:00:00"),
        "INSERT INTO transactions (id, connection_id, stream, venue_tx_id, kind, occurred_at, asset, amount, "
        "market, provenance, orphaned, created_at) VALUES (1, 1, 'deposits', 'd1', 'deposit', "
        "'2024-01-01 00:00:00', 'BTC', 1, '', 'api', FALSE, '2024-01-01 00:00:00')",
        "INSERT INTO transaction_values (transaction_id, currency, value, source, route, reason, attempts, "
        "updated_at) VALUES (1, 'USD', 42000, 'kraken', '', '', 1, '2024-01-01 00:00:00')",
    )
    try:
        _seed(engine, "0018", rows)
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT status FROM transactions")).scalar_one() == "completed"
            assert conn.execute(text("SELECT count(*) FROM transaction_values")).scalar_one() == 1
        downgrade(engine, "0018")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM transaction_values")).scalar_one() == 1
        upgrade(engine)
        assert schema_drift(engine) == []
    finally:
        engine.dispose()


def test_superseded_connections_holdings_are_closed_by_0031(empty_db_url: str) -> None:
    """Earlier versions left a superseded connection's balances and positions open beside its replacement's:
    0031 closes them at the moment the connection was superseded, and leaves every other connection's open."""
    engine = make_engine(empty_db_url)
    created = "2025-01-01 00:00:00"
    rows = (
        _EMPLOYEE,
        _CONNECTION.format(id=1, venue="kraken", status="superseded", created=created, updated="2025-03-01 00:00:00"),
        _CONNECTION.format(id=2, venue="kraken", status="active", created=created, updated="2025-03-02 00:00:00"),
        "INSERT INTO balance_snapshots (id, connection_id, asset, account, amount, valid_from, valid_to, "
        "observed_until, provenance) VALUES (1, 1, 'BTC', '', '1', '2025-02-01 00:00:00', NULL, "
        "'2025-02-28 00:00:00', 'api')",
        "INSERT INTO balance_snapshots (id, connection_id, asset, account, amount, valid_from, valid_to, "
        "observed_until, provenance) VALUES (2, 2, 'BTC', '', '1', '2025-02-01 00:00:00', NULL, "
        "'2025-02-28 00:00:00', 'api')",
        "INSERT INTO prediction_positions (id, connection_id, market_id, market_title, category, outcome, size, "
        "valid_from, valid_to, observed_until) VALUES (1, 1, 'm1', 'A market', '', 'Yes', '10', "
        "'2025-02-01 00:00:00', NULL, '2025-02-28 00:00:00')",
        "INSERT INTO prediction_positions (id, connection_id, market_id, market_title, category, outcome, size, "
        "valid_from, valid_to, observed_until) VALUES (2, 2, 'm1', 'A market', '', 'Yes', '10', "
        "'2025-02-01 00:00:00', NULL, '2025-02-28 00:00:00')",
    )
    closed_query = {table: text(
        "SELECT t.connection_id FROM " + table + " t JOIN connections c ON c.id = t.connection_id "  # noqa: S608
        "WHERE t.valid_to = c.updated_at") for table in ("balance_snapshots", "prediction_positions")}
    open_query = {table: text("SELECT connection_id FROM " + table + " WHERE valid_to IS NULL")  # noqa: S608
                  for table in ("balance_snapshots", "prediction_positions")}
    try:
        _seed(engine, "0027", rows)
        upgrade(engine)
        with engine.connect() as conn:
            for table in ("balance_snapshots", "prediction_positions"):
                closed = conn.execute(closed_query[table]).scalars().all()
                still_open = conn.execute(open_query[table]).scalars().all()
                assert (closed, still_open) == ([1], [2]), table
        downgrade(engine, "0027")
        upgrade(engine)
        assert schema_drift(engine) == []
    finally:
        engine.dispose()
