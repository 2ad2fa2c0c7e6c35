"""notifications: users' channels and subscriptions, the outbox

Revision ID: 0014_notifications
Revises: 0013_case_notes
Create Date: 2026-12-07 16:00:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0014_notifications'
down_revision = '0013_case_notes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('notification_prefs',
    sa.Column('user_name', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=200), nullable=True),
    sa.Column('webhook_url', sa.String(length=500), nullable=True),
    sa.Column('events', sa.String(length=200), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('user_name')
    )
    op.create_table('outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('user_name', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('target', sa.String(length=500), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('ticket_no', sa.String(length=32), nullable=True),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('dedup_key', sa.String(length=200), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dedup_key')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_state_next', ['state', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_state_next')
    op.drop_table('outbox')
    op.drop_table('notification_prefs')
