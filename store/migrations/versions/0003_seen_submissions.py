"""Requests already acted on, so a replayed form or a Slack retry does nothing the second
time (`bot/inbound/replays.py`); the primary key makes the first insert win across replicas.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seen_submissions",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_seen_submissions_seen_at", "seen_submissions", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_seen_submissions_seen_at", table_name="seen_submissions")
    op.drop_table("seen_submissions")
