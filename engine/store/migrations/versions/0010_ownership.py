"""case ownership at work (X1) and conflict of interest (P12): owner offers on tasks, staff named in a complaint

Revision ID: 0010_ownership
Revises: 0009_case_owner
Create Date: 2026-12-07 16:00:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0010_ownership'
down_revision = '0009_case_owner'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN (no batch copy: other tables' foreign keys point at these tables).
    op.add_column('human_tasks', sa.Column('offer_due', sa.DateTime(), nullable=True))
    op.add_column('instances', sa.Column('staff_involved', sa.String(length=1000), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE instances DROP COLUMN staff_involved")  # SQLite ≥ 3.35 and PostgreSQL
    op.execute("ALTER TABLE human_tasks DROP COLUMN offer_due")
