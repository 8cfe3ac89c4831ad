"""What a crash must not lose (issue #10): an incident's first announcement is claimed like a
window's (fencing token, claimant, when), an incident and a window remember the draft they
were made from (so the recovery tells its person what happened, not "outcome unknown"), a
draft remembers the Slack submission it came from (so a Submit pressed again after a crash
is acted on, not swallowed as a replay). (Resolve and cancel notices need no column: they
are `reminders` rows of kinds `resolved` and `cancelled`.)

Revision ID: 0013
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("announce_token", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("announce_claimed_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("announce_claimed_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("draft_id", sa.Integer(), nullable=True))
        batch.create_index("ix_incidents_draft_id", ["draft_id"])
    with op.batch_alter_table("maintenance_windows") as batch:
        batch.add_column(sa.Column("draft_id", sa.Integer(), nullable=True))
        batch.create_index("ix_maintenance_windows_draft_id", ["draft_id"])
    with op.batch_alter_table("drafts") as batch:
        batch.add_column(sa.Column("submission_key", sa.String(length=200), nullable=True))
        batch.create_index("ix_drafts_submission_key", ["submission_key"])


def downgrade() -> None:
    with op.batch_alter_table("drafts") as batch:
        batch.drop_index("ix_drafts_submission_key")
        batch.drop_column("submission_key")
    with op.batch_alter_table("maintenance_windows") as batch:
        batch.drop_index("ix_maintenance_windows_draft_id")
        batch.drop_column("draft_id")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_index("ix_incidents_draft_id")
        batch.drop_column("draft_id")
        batch.drop_column("announce_claimed_at")
        batch.drop_column("announce_claimed_by")
        batch.drop_column("announce_token")
