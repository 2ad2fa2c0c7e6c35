"""the case owner (X1): the first responsible agent of a ticket

Revision ID: 0009_case_owner
Revises: 0008_external_tasks
Create Date: 2026-12-07 15:45:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0009_case_owner'
down_revision = '0008_external_tasks'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN (no batch copy of the table: other tables' foreign keys point at it).
    op.add_column('instances', sa.Column('owner', sa.String(length=64), nullable=True))
    op.create_index('ix_instances_owner', 'instances', ['owner'], unique=False)
    # Tickets opened before: the agent who opened one owns it (002 第四章).
    op.execute("UPDATE instances SET owner = created_by WHERE parent_id IS NULL AND created_by IN "
               "(SELECT name FROM users WHERE ',' || REPLACE(roles, ' ', '') || ',' LIKE '%,agent,%')")


def downgrade() -> None:
    op.drop_index('ix_instances_owner', table_name='instances')
    op.execute("ALTER TABLE instances DROP COLUMN owner")  # SQLite ≥ 3.35 and PostgreSQL; no table copy
