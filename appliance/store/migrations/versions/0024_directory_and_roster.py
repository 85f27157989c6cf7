"""directory users (source, directory id, who disabled them) and the roster (manager, access person, source)

Existing users are local accounts; existing employees were added by hand (no roster source) and are
not access persons until the roster or an admin says so.

Revision ID: 0024
Revises: 0026
Create Date: 2026-12-06 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import appliance.store.base

revision: str = '0024'
down_revision: str | None = '0026'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=16), nullable=False, server_default='local'))
        batch_op.add_column(sa.Column('directory_id', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('directory_dn', sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column('directory_synced_at', appliance.store.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('disabled_by', sa.String(length=16), nullable=True))
        batch_op.create_index('ix_users_directory', ['source', 'directory_id'], unique=True)
    op.execute("UPDATE users SET disabled_by = 'admin' WHERE is_active = false")
    # Plain ADD COLUMN (constant defaults): a batch rebuild of employees on SQLite would drop the table that
    # connections reference, and fail (or cascade) on any install that has employees.
    op.add_column('employees', sa.Column('manager_email', sa.String(length=254), nullable=False, server_default=''))
    op.add_column('employees', sa.Column('access_person', sa.Boolean(), nullable=False, server_default='0'))
    op.add_column('employees', sa.Column('access_person_since', sa.Date(), nullable=True))
    op.add_column('employees', sa.Column('roster_source', sa.String(length=16), nullable=True))
    op.add_column('employees', sa.Column('roster_seen_at', appliance.store.base.UTCDateTime(timezone=True),
                                         nullable=True))
    op.create_table('roster_state',
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('first_applied_at', appliance.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reviewed_digest', sa.String(length=64), nullable=True),
    sa.Column('reviewed_at', appliance.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_run_at', appliance.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_summary', sa.String(length=500), nullable=False),
    sa.Column('pending', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('source', name=op.f('pk_roster_state'))
    )


def downgrade() -> None:
    op.drop_table('roster_state')
    for column in ('roster_seen_at', 'roster_source', 'access_person_since', 'access_person', 'manager_email'):
        op.drop_column('employees', column)  # ALTER TABLE DROP COLUMN (SQLite >= 3.35): no rebuild
    op.drop_index('ix_users_directory', table_name='users')
    for column in ('disabled_by', 'directory_synced_at', 'directory_dn', 'directory_id', 'source'):
        op.drop_column('users', column)  # no rebuild of users, which api keys and roles reference
