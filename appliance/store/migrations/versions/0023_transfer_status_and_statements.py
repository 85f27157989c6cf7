"""transfer status, statement imports, sync progress

Transactions carry the venue's transfer status (completed, pending, failed, cancelled); rows stored before
this revision were all recorded as real movements, so they become ``completed``. Statement imports record the
files imported for a connection; the records they add point to them. A sync cursor carries the progress of
a long walk (a first sync), shown on the employee page.

Revision ID: 0023
Revises: 0018
Create Date: 2026-12-06 14:00:00
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from alembic import op

import appliance.store.base

revision: str = '0023'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@contextlib.contextmanager
def keeping_rows_that_reference(table: str) -> Iterator[None]:
    """Around a batch rebuild of ``table`` on SQLite: the rebuild drops the old table, whose implicit
    DELETE would cascade to (or be refused by) every row that references it — transaction_values would
    lose every stored value. Those rows are kept aside meanwhile and put back (their tables are unchanged).
    PRAGMA foreign_keys cannot be turned off inside the migration's transaction."""
    bind = op.get_bind()
    if bind.dialect.name != 'sqlite':
        yield
        return
    inspector = sa.inspect(bind)
    referencing = sorted(name for name in inspector.get_table_names() if name != table and any(
        fk['referred_table'] == table for fk in inspector.get_foreign_keys(name)))
    for name in referencing:
        op.execute(f'CREATE TEMPORARY TABLE kept_{name} AS SELECT * FROM {name}')
        op.execute(f'DELETE FROM {name}')
    yield
    for name in referencing:
        op.execute(f'INSERT INTO {name} SELECT * FROM kept_{name}')
        op.execute(f'DROP TABLE kept_{name}')


def upgrade() -> None:
    op.create_table(
        'statement_imports',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('connection_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('format', sa.String(length=40), nullable=False),
        sa.Column('file_name', sa.String(length=255), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('covered_from', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('covered_to', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column('rows', sa.Integer(), nullable=False),
        sa.Column('added', sa.Integer(), nullable=False),
        sa.Column('duplicates', sa.Integer(), nullable=False),
        sa.Column('imported_by', sa.String(length=200), nullable=False),
        sa.Column('created_at', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['connection_id'], ['connections.id'],
                                name=op.f('fk_statement_imports_connection_id_connections'), ondelete='RESTRICT'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_statement_imports')),
    )
    with op.batch_alter_table('statement_imports', schema=None) as batch_op:
        batch_op.create_index('ix_statement_imports_connection', ['connection_id'], unique=False)

    with keeping_rows_that_reference('transactions'), op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=16), server_default='completed', nullable=False))
        batch_op.add_column(sa.Column('status_changed_at', appliance.store.base.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('statement_import_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                                      nullable=True))
        batch_op.create_foreign_key(op.f('fk_transactions_statement_import_id_statement_imports'),
                                    'statement_imports', ['statement_import_id'], ['id'], ondelete='RESTRICT')

    with op.batch_alter_table('sync_cursors', schema=None) as batch_op:
        batch_op.add_column(sa.Column('progress', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sync_cursors', schema=None) as batch_op:
        batch_op.drop_column('progress')
    with keeping_rows_that_reference('transactions'), op.batch_alter_table('transactions', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('fk_transactions_statement_import_id_statement_imports'), type_='foreignkey')
        batch_op.drop_column('statement_import_id')
        batch_op.drop_column('status_changed_at')
        batch_op.drop_column('status')
    with op.batch_alter_table('statement_imports', schema=None) as batch_op:
        batch_op.drop_index('ix_statement_imports_connection')
    op.drop_table('statement_imports')
