"""shift handovers and their items (X2), ticket links for repeat complaints (X3)

Revision ID: 0011_handover
Revises: 0010_ownership
Create Date: 2026-12-07 16:00:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0011_handover'
down_revision = '0010_ownership'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('handovers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shift', sa.String(length=32), nullable=False),
    sa.Column('window_start', sa.DateTime(), nullable=False),
    sa.Column('window_end', sa.DateTime(), nullable=False),
    sa.Column('outgoing', sa.String(length=64), nullable=False),
    sa.Column('incoming', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('accepted_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('handovers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_handovers_incoming'), ['incoming'], unique=False)
        batch_op.create_index(batch_op.f('ix_handovers_outgoing'), ['outgoing'], unique=False)
        batch_op.create_index(batch_op.f('ix_handovers_started_at'), ['started_at'], unique=False)

    op.create_table('handover_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('handover_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('ticket_no', sa.String(length=32), nullable=False),
    sa.Column('task_id', sa.String(length=36), nullable=True),
    sa.Column('label', sa.String(length=200), nullable=True),
    sa.Column('holder', sa.String(length=64), nullable=True),
    sa.Column('due_at', sa.DateTime(), nullable=True),
    sa.Column('included', sa.Boolean(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('outcome_note', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['handover_id'], ['handovers.id'], ),
    sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('handover_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_handover_items_handover_id'), ['handover_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_handover_items_instance_id'), ['instance_id'], unique=False)

    op.create_table('ticket_links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('earlier_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('basis', sa.String(length=16), nullable=True),
    sa.ForeignKeyConstraint(['earlier_id'], ['instances.id'], ),
    sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('instance_id', 'earlier_id', 'kind')
    )
    with op.batch_alter_table('ticket_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_links_earlier_id'), ['earlier_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_links_instance_id'), ['instance_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('ticket_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_links_instance_id'))
        batch_op.drop_index(batch_op.f('ix_ticket_links_earlier_id'))
    op.drop_table('ticket_links')
    with op.batch_alter_table('handover_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_handover_items_instance_id'))
        batch_op.drop_index(batch_op.f('ix_handover_items_handover_id'))
    op.drop_table('handover_items')
    with op.batch_alter_table('handovers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_handovers_started_at'))
        batch_op.drop_index(batch_op.f('ix_handovers_outgoing'))
        batch_op.drop_index(batch_op.f('ix_handovers_incoming'))
    op.drop_table('handovers')
