"""relationship care: customer class, owner, greeting consent, anniversary, last revisit; care cycles, care
plans, customer events and their attendees

Revision ID: 0012_care
Revises: 0011_handover
Create Date: 2026-12-07 16:00:00
"""
from __future__ import annotations

from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa


revision = '0012_care'
down_revision = '0011_handover'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ALTER TABLE ... ADD COLUMN (a batch copy of a table others refer to would drop it)
    op.add_column('customers', sa.Column('customer_class', sa.String(length=16), nullable=True))
    op.add_column('customers', sa.Column('owner', sa.String(length=64), nullable=True))
    op.add_column('customers', sa.Column('greeting_consent', sa.Boolean(), server_default='0', nullable=False))
    op.add_column('customers', sa.Column('greeting_channel', sa.String(length=16), nullable=True))
    op.add_column('customers', sa.Column('anniversary', sa.Date(), nullable=True))
    op.add_column('customers', sa.Column('last_revisit_at', sa.DateTime(), nullable=True))
    op.add_column('customers', sa.Column('last_satisfaction', sa.Integer(), nullable=True))
    op.create_index(op.f('ix_customers_owner'), 'customers', ['owner'], unique=False)

    cycles = op.create_table('care_cycles',
    sa.Column('customer_class', sa.String(length=16), nullable=False),
    sa.Column('months', sa.Integer(), nullable=False),
    sa.Column('updated_by', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('customer_class')
    )
    now = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)
    op.bulk_insert(cycles, [  # Q1 defaults: VIP monthly, important customers quarterly
        {'customer_class': 'vip', 'months': 1, 'updated_by': 'system', 'updated_at': now},
        {'customer_class': 'important', 'months': 3, 'updated_by': 'system', 'updated_at': now},
    ])

    op.create_table('care_plans',
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], ),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('care_plans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_care_plans_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_care_plans_instance_id'), ['instance_id'], unique=False)

    op.create_table('customer_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('place', sa.String(length=300), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('customer_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_events_day'), ['day'], unique=False)

    op.create_table('event_attendees',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('feedback', sa.Text(), nullable=True),
    sa.Column('score', sa.Integer(), nullable=True),
    sa.Column('feedback_by', sa.String(length=64), nullable=True),
    sa.Column('feedback_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['event_id'], ['customer_events.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id', 'customer_id', name='uq_event_attendee')
    )
    with op.batch_alter_table('event_attendees', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_attendees_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_event_attendees_event_id'), ['event_id'], unique=False)


def downgrade() -> None:
    op.drop_table('event_attendees')
    op.drop_table('customer_events')
    op.drop_table('care_plans')
    op.drop_table('care_cycles')
    op.drop_index(op.f('ix_customers_owner'), table_name='customers')
    for column in ('last_satisfaction', 'last_revisit_at', 'anniversary', 'greeting_channel', 'greeting_consent',
                   'owner', 'customer_class'):
        op.drop_column('customers', column)
