"""conduct rules and cases: groups, lists, rules, case notes/history/evidence, the mail outbox

Existing alerts: the status ``assigned`` becomes ``investigating`` (assignment is its own field now),
``updated_at`` starts at ``created_at``, ``reason`` empty, and a closed alert keeps its employee
flagged 30 days after it closed (the window before it became a setting).

Revision ID: 0019
Revises: 0023
Create Date: 2026-12-06 12:59:05.054955
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import appliance.store.base


revision: str = '0019'
down_revision: str | None = '0023'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('conduct_changes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('subject', sa.String(length=16), nullable=False),
    sa.Column('subject_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('changed_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('actor_label', sa.String(length=200), nullable=False),
    sa.Column('changed_at', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['changed_by'], ['users.id'], name=op.f('fk_conduct_changes_changed_by_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conduct_changes'))
    )
    with op.batch_alter_table('conduct_changes', schema=None) as batch_op:
        batch_op.create_index('ix_conduct_changes_subject', ['subject', 'subject_id', 'version'], unique=False)

    op.create_table('conduct_lists',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('applies_to', sa.JSON(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('updated_at', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_conduct_lists_created_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['updated_by'], ['users.id'], name=op.f('fk_conduct_lists_updated_by_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conduct_lists')),
    sa.UniqueConstraint('name', name=op.f('uq_conduct_lists_name'))
    )
    op.create_table('employee_groups',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_employee_groups_created_by_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_employee_groups')),
    sa.UniqueConstraint('name', name=op.f('uq_employee_groups_name'))
    )
    op.create_table('employee_group_members',
    sa.Column('group_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('employee_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('added_at', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('added_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['added_by'], ['users.id'], name=op.f('fk_employee_group_members_added_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['employee_id'], ['employees.id'], name=op.f('fk_employee_group_members_employee_id_employees'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['group_id'], ['employee_groups.id'], name=op.f('fk_employee_group_members_group_id_employee_groups'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('group_id', 'employee_id', name=op.f('pk_employee_group_members'))
    )
    with op.batch_alter_table('employee_group_members', schema=None) as batch_op:
        batch_op.create_index('ix_employee_group_members_employee', ['employee_id'], unique=False)

    op.create_table('list_entries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('list_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('value', sa.String(length=500), nullable=False),
    sa.Column('match_key', sa.String(length=500), nullable=False),
    sa.Column('effective_from', appliance.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('effective_to', appliance.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('added_at', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('added_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('removed_at', appliance.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('removed_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['added_by'], ['users.id'], name=op.f('fk_list_entries_added_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['list_id'], ['conduct_lists.id'], name=op.f('fk_list_entries_list_id_conduct_lists'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['removed_by'], ['users.id'], name=op.f('fk_list_entries_removed_by_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_list_entries'))
    )
    with op.batch_alter_table('list_entries', schema=None) as batch_op:
        batch_op.create_index('ix_list_entries_list', ['list_id'], unique=False)

    op.create_table('rules',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('applies_to', sa.JSON(), nullable=False),
    sa.Column('list_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('updated_at', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('evaluated_at', appliance.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('evaluated_version', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_rules_created_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['list_id'], ['conduct_lists.id'], name=op.f('fk_rules_list_id_conduct_lists'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['updated_by'], ['users.id'], name=op.f('fk_rules_updated_by_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rules')),
    sa.UniqueConstraint('name', name=op.f('uq_rules_name'))
    )
    op.create_table('evaluation_marks',
    sa.Column('connection_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('transaction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('position_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('balance_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('updated_at', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_evaluation_marks_connection_id_connections'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('connection_id', name=op.f('pk_evaluation_marks'))
    )
    op.create_table('unvalued_records',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('rule_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('record_key', sa.String(length=100), nullable=False),
    sa.Column('employee_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('reason', sa.String(length=300), nullable=False),
    sa.Column('first_seen_at', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('checked_at', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('valued_at', appliance.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['employee_id'], ['employees.id'], name=op.f('fk_unvalued_records_employee_id_employees'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['rule_id'], ['rules.id'], name=op.f('fk_unvalued_records_rule_id_rules'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_unvalued_records')),
    sa.UniqueConstraint('rule_id', 'record_key', name=op.f('uq_unvalued_records_rule_id_record_key'))
    )
    with op.batch_alter_table('unvalued_records', schema=None) as batch_op:
        batch_op.create_index('ix_unvalued_records_open', ['rule_id', 'valued_at'], unique=False)

    op.create_table('alert_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('alert_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('actor_label', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_alert_events_actor_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_alert_events_alert_id_alerts'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_events'))
    )
    with op.batch_alter_table('alert_events', schema=None) as batch_op:
        batch_op.create_index('ix_alert_events_alert', ['alert_id'], unique=False)

    op.create_table('alert_evidence',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('alert_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('ref_id', sa.BigInteger(), nullable=True),
    sa.Column('reference', sa.String(length=500), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=False),
    sa.Column('added_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('added_label', sa.String(length=200), nullable=False),
    sa.Column('added_at', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['added_by'], ['users.id'], name=op.f('fk_alert_evidence_added_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_alert_evidence_alert_id_alerts'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_evidence'))
    )
    with op.batch_alter_table('alert_evidence', schema=None) as batch_op:
        batch_op.create_index('ix_alert_evidence_alert', ['alert_id'], unique=False)

    op.create_table('alert_notes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('alert_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('author_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('author_label', sa.String(length=200), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_alert_notes_alert_id_alerts'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_alert_notes_author_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_notes'))
    )
    with op.batch_alter_table('alert_notes', schema=None) as batch_op:
        batch_op.create_index('ix_alert_notes_alert', ['alert_id'], unique=False)

    op.create_table('mail_outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('recipients', sa.JSON(), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('body_sealed', sa.LargeBinary(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claimed_by', sa.String(length=100), nullable=True),
    sa.Column('claimed_until', appliance.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('alert_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', appliance.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', appliance.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=300), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_mail_outbox_alert_id_alerts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_outbox'))
    )
    with op.batch_alter_table('mail_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_mail_outbox_due', ['status', 'next_attempt_at'], unique=False)

    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rule_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.add_column(sa.Column('rule_version', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('list_entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.add_column(sa.Column('record_key', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('occurred_at', appliance.store.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('created_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.add_column(sa.Column('reason', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('updated_at', appliance.store.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('flagged_until', appliance.store.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_alerts_rule_id_record_key'), ['rule_id', 'record_key'])
        batch_op.create_foreign_key(batch_op.f('fk_alerts_created_by_users'), 'users', ['created_by'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key(batch_op.f('fk_alerts_list_entry_id_list_entries'), 'list_entries', ['list_entry_id'], ['id'], ondelete='RESTRICT')
        batch_op.create_foreign_key(batch_op.f('fk_alerts_rule_id_rules'), 'rules', ['rule_id'], ['id'], ondelete='RESTRICT')

    op.execute("UPDATE alerts SET updated_at = created_at")
    op.execute("UPDATE alerts SET status = 'investigating' WHERE status = 'assigned'")
    # Alerts closed before this version flagged their employee for 30 days after closing (the old FLAG_WINDOW).
    closed = sa.table('alerts', sa.column('id', sa.Integer()), sa.column('resolved_at', appliance.store.base.UTCDateTime()),
                      sa.column('flagged_until', appliance.store.base.UTCDateTime()))
    bind = op.get_bind()
    for alert_id, resolved_at in bind.execute(sa.select(closed.c.id, closed.c.resolved_at).where(closed.c.resolved_at.is_not(None))).all():
        bind.execute(closed.update().where(closed.c.id == alert_id).values(flagged_until=resolved_at + datetime.timedelta(days=30)))
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.alter_column('updated_at', existing_type=appliance.store.base.UTCDateTime(timezone=True), nullable=False)
        batch_op.alter_column('reason', existing_type=sa.Text(), server_default=None)


def downgrade() -> None:
    op.execute("UPDATE alerts SET status = 'assigned' WHERE status = 'investigating'")
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_alerts_rule_id_rules'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_alerts_list_entry_id_list_entries'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_alerts_created_by_users'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_alerts_rule_id_record_key'), type_='unique')
        batch_op.drop_column('flagged_until')
        batch_op.drop_column('updated_at')
        batch_op.drop_column('reason')
        batch_op.drop_column('created_by')
        batch_op.drop_column('occurred_at')
        batch_op.drop_column('record_key')
        batch_op.drop_column('list_entry_id')
        batch_op.drop_column('rule_version')
        batch_op.drop_column('rule_id')

    with op.batch_alter_table('mail_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_mail_outbox_due')

    op.drop_table('mail_outbox')
    with op.batch_alter_table('alert_notes', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_notes_alert')

    op.drop_table('alert_notes')
    with op.batch_alter_table('alert_evidence', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_evidence_alert')

    op.drop_table('alert_evidence')
    with op.batch_alter_table('alert_events', schema=None) as batch_op:
        batch_op.drop_index('ix_alert_events_alert')

    op.drop_table('alert_events')
    with op.batch_alter_table('unvalued_records', schema=None) as batch_op:
        batch_op.drop_index('ix_unvalued_records_open')

    op.drop_table('unvalued_records')
    op.drop_table('evaluation_marks')
    op.drop_table('rules')
    with op.batch_alter_table('list_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_list_entries_list')

    op.drop_table('list_entries')
    with op.batch_alter_table('employee_group_members', schema=None) as batch_op:
        batch_op.drop_index('ix_employee_group_members_employee')

    op.drop_table('employee_group_members')
    op.drop_table('employee_groups')
    op.drop_table('conduct_lists')
    with op.batch_alter_table('conduct_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_conduct_changes_subject')

    op.drop_table('conduct_changes')
