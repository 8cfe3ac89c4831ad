"""A window's end as first planned, so the weekly digest can tell a window that ran over its
plan (extended) from one that ended on time.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("maintenance_windows") as batch:
        batch.add_column(sa.Column("planned_end", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("maintenance_windows") as batch:
        batch.drop_column("planned_end")
