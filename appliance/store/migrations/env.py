"""Alembic environment. Always driven from appliance.store.migrate with a live connection."""

from __future__ import annotations

from alembic import context

from appliance.store import models  # noqa: F401  (registers every table on the metadata)
from appliance.store.base import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable by calling alembic's own CLI
    raise RuntimeError("run migrations through `vigatra db upgrade`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    compare_server_default=False,
)
with context.begin_transaction():
    context.run_migrations()
