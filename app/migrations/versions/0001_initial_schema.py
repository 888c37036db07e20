"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 19:21:38.178930
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('system', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('delivery_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('outcome', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('system', 'delivery_id', name='uq_events_delivery')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_pending', ['state', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_received_at'), ['received_at'], unique=False)

    op.create_table('history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('work_item_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('field', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('old_value', sa.JSON(), nullable=True),
    sa.Column('new_value', sa.JSON(), nullable=True),
    sa.Column('system', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_history_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_history_work_item_id'), ['work_item_id'], unique=False)

    op.create_table('systems',
    sa.Column('system', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('poll_cursor', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_poll_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_poll_error', sa.Text(), nullable=True),
    sa.Column('deferred_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_write_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('system')
    )
    op.create_table('work_items',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('priority', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('snoozed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('assignee', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('stamps', sa.JSON(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('work_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_work_items_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_work_items_updated_at'), ['updated_at'], unique=False)

    op.create_table('write_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('link_id', sa.Integer(), nullable=False),
    sa.Column('work_item_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('system', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('duration_ms', sa.Float(), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('worker', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('write_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_write_attempts_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_write_attempts_link_id'), ['link_id'], unique=False)

    op.create_table('links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('work_item_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('system', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('external_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('known_state', sa.JSON(), nullable=True),
    sa.Column('vendor_updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_synced_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('create_target', sa.JSON(), nullable=True),
    sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('dirty', sa.Boolean(), nullable=False),
    sa.Column('dirty_version', sa.Integer(), nullable=False),
    sa.Column('synced_version', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('dead', sa.Boolean(), nullable=False),
    sa.Column('dead_reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['work_item_id'], ['work_items.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key'),
    sa.UniqueConstraint('system', 'scope', 'external_id', name='uq_links_object')
    )
    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_links_dead'), ['dead'], unique=False)
        batch_op.create_index('ix_links_due', ['dirty', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_links_work_item_id'), ['work_item_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_links_work_item_id'))
        batch_op.drop_index('ix_links_due')
        batch_op.drop_index(batch_op.f('ix_links_dead'))

    op.drop_table('links')
    with op.batch_alter_table('write_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_write_attempts_link_id'))
        batch_op.drop_index(batch_op.f('ix_write_attempts_at'))

    op.drop_table('write_attempts')
    with op.batch_alter_table('work_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_work_items_updated_at'))
        batch_op.drop_index(batch_op.f('ix_work_items_status'))

    op.drop_table('work_items')
    op.drop_table('systems')
    with op.batch_alter_table('history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_history_work_item_id'))
        batch_op.drop_index(batch_op.f('ix_history_at'))

    op.drop_table('history')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_events_received_at'))
        batch_op.drop_index('ix_events_pending')

    op.drop_table('events')
