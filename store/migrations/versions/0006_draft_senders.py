"""Which instance is sending a draft, and each instance's heartbeat, so a draft left
"sending" by a process that died becomes "outcome unknown" and its person is told (issue #10).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("drafts") as batch:
        batch.add_column(sa.Column("sent_by", sa.String(length=64), nullable=True))
    op.create_table(
        "instances",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_instances_heartbeat_at", "instances", ["heartbeat_at"])


def downgrade() -> None:
    op.drop_index("ix_instances_heartbeat_at", table_name="instances")
    op.drop_table("instances")
    with op.batch_alter_table("drafts") as batch:
        batch.drop_column("sent_by")
