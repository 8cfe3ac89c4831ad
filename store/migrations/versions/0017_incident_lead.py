"""An incident's lead, the maintenance that overlapped its start, and its timeline's pinned messages (their permalink, once each); an incident's lead (who runs it; the declarer unless someone else is named), and which
timeline events are posted by a claimed row (`reminders`, kind `lead`): a lead change's reply
in the thread is posted exactly once, like a resolve notice.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("lead_id", sa.String(32), nullable=True))
        # The maintenance windows running (or just ended) when it was declared, as announced.
        batch.add_column(sa.Column("overlaps", sa.JSON(), nullable=True))
    with op.batch_alter_table("incident_events") as batch:
        batch.add_column(sa.Column("post_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("link", sa.String(500), nullable=True))
    op.create_index("ix_incident_events_post_id", "incident_events", ["post_id"])
    # A message is pinned to a timeline once, however many people react or Slack retries.
    op.create_index("uq_incident_events_pinned", "incident_events", ["incident_id", "kind", "message_ts"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_incident_events_pinned", table_name="incident_events")
    op.drop_index("ix_incident_events_post_id", table_name="incident_events")
    with op.batch_alter_table("incident_events") as batch:
        batch.drop_column("link")
        batch.drop_column("post_id")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("overlaps")
        batch.drop_column("lead_id")
