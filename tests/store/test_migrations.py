"""Migrations: one head, empty -> head matches the models, downgrade and upgrade again, both databases."""

from __future__ import annotations

from sqlalchemy import inspect

from appliance.store.base import Base
from appliance.store.migrate import current_revision, downgrade, head_revision, schema_drift, upgrade
from appliance.store.session import make_engine


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
