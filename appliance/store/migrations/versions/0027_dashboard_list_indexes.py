"""dashboard at firm scale: indexes for the employees list's orders and the overview's last successful poll

Revision ID: 0027
Revises: 0021
Create Date: 2026-12-06 19:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0027'
down_revision: str | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The employees list reads a page in the order of one of these (then id) instead of sorting every employee.
    op.create_index('ix_employees_lower_name', 'employees', [sa.text('lower(name)'), 'id'], unique=False)
    op.create_index('ix_employees_lower_department', 'employees', [sa.text('lower(department)'), 'id'],
                    unique=False)
    op.create_index('ix_employees_status', 'employees', ['status', 'id'], unique=False)
    op.create_index('ix_employees_created', 'employees', ['created_at', 'id'], unique=False)
    # The overview's "last success": max() from the index.
    op.create_index('ix_connections_last_success', 'connections', ['last_success_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_connections_last_success', table_name='connections')
    op.drop_index('ix_employees_created', table_name='employees')
    op.drop_index('ix_employees_status', table_name='employees')
    op.drop_index('ix_employees_lower_department', table_name='employees')
    op.drop_index('ix_employees_lower_name', table_name='employees')
