"""Fencing tokens for reminder claims and first announcements, and "not before" for a
reminder Slack rate-limited (issue #10 item 4): a claim taken over never posts, and a 429
hands the reminder back instead of holding it through Retry-After. `channel_pace`: the
send slots of each channel and method, shared by replicas (issue #14).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reminders") as batch:
        batch.add_column(sa.Column("claim_token", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("not_before", sa.DateTime(), nullable=True))
    with op.batch_alter_table("maintenance_windows") as batch:
        batch.add_column(sa.Column("announce_token", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("announce_claimed_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("announce_claimed_at", sa.DateTime(), nullable=True))
    op.create_table(
        "channel_pace",
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("next_slot", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("channel", "method"),
    )


def downgrade() -> None:
    op.drop_table("channel_pace")
    with op.batch_alter_table("maintenance_windows") as batch:
        batch.drop_column("announce_claimed_at")
        batch.drop_column("announce_claimed_by")
        batch.drop_column("announce_token")
    with op.batch_alter_table("reminders") as batch:
        batch.drop_column("not_before")
        batch.drop_column("claim_token")
