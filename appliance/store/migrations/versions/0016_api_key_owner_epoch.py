"""API keys remember their owner's token epoch

A key issued before its owner's password change, role removal or disable must stop answering, like
the owner's sessions and tokens. Existing keys take their owner's current epoch, so an upgrade
leaves every working key working.

Revision ID: 0016
Revises: 0003
Create Date: 2026-12-06 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner_epoch', sa.Integer(), nullable=False, server_default='0'))
    op.execute("UPDATE api_keys SET owner_epoch = (SELECT users.token_epoch FROM users WHERE users.id = api_keys.user_id)")


def downgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('owner_epoch')
