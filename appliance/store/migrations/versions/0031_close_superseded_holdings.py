"""close the balances and positions still open under superseded connections

Revision ID: 0031
Revises: 0027
Create Date: 2026-12-06 22:45:00

A re-onboarded account was counted twice in what is held now (values, the firm-wide holdings, the employee
page): the superseded connection's last balances stayed open beside the new connection's. Onboarding now
closes them when it supersedes a connection; this closes those left open by earlier versions, at the moment
the connection was superseded (its last update; a row observed after that moment closes where it starts).
A data fix: the downgrade leaves the rows as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0031'
down_revision: str | None = '0027'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ('balance_snapshots', 'prediction_positions'):
        op.execute(
            f"UPDATE {table} SET valid_to = ("
            f"SELECT CASE WHEN c.updated_at > {table}.valid_from THEN c.updated_at ELSE {table}.valid_from END "
            f"FROM connections c WHERE c.id = {table}.connection_id) "
            f"WHERE valid_to IS NULL AND connection_id IN (SELECT id FROM connections WHERE status = 'superseded')")


def downgrade() -> None:
    pass  # a data fix: which rows it closed is not recorded, and reopening them would count accounts twice again
