"""Incidents' update nudges share the reminders table: a row belongs to a window or, with
`incident_id` set and `window_id` empty, to an incident (one row per incident and kind).
The overrun prompt is only a new `kind` value, so it needs no change here.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite cannot change a column's nullability or add constraints in place.
    with op.batch_alter_table("reminders") as batch:
        batch.alter_column("window_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("incident_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("reminders_incident_id_fkey", "incidents", ["incident_id"], ["id"])
        batch.create_unique_constraint("reminders_incident_id_kind_key", ["incident_id", "kind"])
        batch.create_index("ix_reminders_incident_id", ["incident_id"], unique=False)


def downgrade() -> None:
    # Nudges have no window, and a window's reminder needs one again.
    op.execute("DELETE FROM reminders WHERE window_id IS NULL")
    with op.batch_alter_table("reminders") as batch:
        batch.drop_index("ix_reminders_incident_id")
        batch.drop_constraint("reminders_incident_id_kind_key", type_="unique")
        batch.drop_constraint("reminders_incident_id_fkey", type_="foreignkey")
        batch.drop_column("incident_id")
        batch.alter_column("window_id", existing_type=sa.Integer(), nullable=False)
