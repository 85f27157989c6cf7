"""Schema migrations, driven programmatically (the migrations ship inside the package)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from appliance.store import models  # noqa: F401
from appliance.store.base import Base

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(connection: Any = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations must have exactly one head, found {heads}")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


def schema_drift(engine: Engine) -> list[Any]:
    """Differences between the models and the live schema (empty when they agree).

    SQLite's reflection does not read expression indexes (``lower(name)``): SQLAlchemy says so with a warning,
    and Alembic leaves those indexes out of the comparison on SQLite; PostgreSQL compares them."""
    with engine.connect() as conn, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression-based index")
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, Base.metadata))


def revision(engine: Engine, message: str) -> None:
    """Developer helper: autogenerate a new revision against an up-to-date database."""
    with engine.begin() as conn:
        command.revision(alembic_config(conn), message=message, autogenerate=True)
