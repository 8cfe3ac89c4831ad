"""Who cancelled a window and when, so a second person cancelling it at the same time is
told who won (issue #10) instead of the channel hearing "Cancelled" twice.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("maintenance_windows") as batch:
        batch.add_column(sa.Column("cancelled_by", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("cancelled_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("maintenance_windows") as batch:
        batch.drop_column("cancelled_at")
        batch.drop_column("cancelled_by")
