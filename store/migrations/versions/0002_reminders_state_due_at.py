"""An index for the scheduler's two questions, asked at every wake-up: which reminders are
pending and due, and when is the next one (`WHERE state = … ORDER BY due_at`).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_reminders_state_due_at", "reminders", ["state", "due_at"])


def downgrade() -> None:
    op.drop_index("ix_reminders_state_due_at", table_name="reminders")
