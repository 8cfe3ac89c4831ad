"""An incident's own channel (SITREP_INCIDENT_CHANNELS, issue #13) and the summary message
kept current there. Archiving it later is a `reminders` row of kind `archive`, which needs
no schema change.

Revision ID: 0010
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("room_channel_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("room_message_ts", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("room_message_ts")
        batch.drop_column("room_channel_id")
