"""reliability: rate-limit streak of a connection, store write probe

Revision ID: 0026
Revises: 0019
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import appliance.store.base

revision: str = '0026'
down_revision: str | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('consecutive_rate_limits', sa.Integer(), server_default='0', nullable=False))
    op.create_table('store_probes',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('node', sa.String(length=100), nullable=False),
    sa.Column('probed_at', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_store_probes'))
    )


def downgrade() -> None:
    op.drop_table('store_probes')
    # ALTER TABLE DROP COLUMN (SQLite >= 3.35), not a batch rebuild: dropping the old connections table would
    # fail (or cascade) on every row that references a connection.
    op.drop_column('connections', 'consecutive_rate_limits')
