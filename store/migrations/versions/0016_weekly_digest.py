"""The weekly digest: one row per digest time, so each week's digest is planned once across
replicas (its post is a `reminders` row of kind `digest`, like every claimed post).

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "weekly_digests",
        sa.Column("due_at", sa.DateTime(), primary_key=True),
        sa.Column("reminder_id", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("weekly_digests")
