"""Recurring maintenance: a series' rule and template, a claim row per occurrence (its
primary key makes each occurrence created once across replicas), and each window's series.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "maintenance_series",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("backend", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("components", sa.JSON(), nullable=False),
        sa.Column("servers", sa.JSON(), nullable=False),
        sa.Column("repeat", sa.String(length=16), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("first_date", sa.String(length=10), nullable=False),
        sa.Column("at_time", sa.String(length=5), nullable=False),
        sa.Column("length_minutes", sa.Integer(), nullable=False),
        sa.Column("weekdays", sa.JSON(), nullable=False),
        sa.Column("until_date", sa.String(length=10), nullable=True),
        sa.Column("count", sa.Integer(), nullable=True),
        sa.Column("ends_before", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("channel_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "series_occurrences",
        sa.Column("series_id", sa.Integer(), sa.ForeignKey("maintenance_series.id"), primary_key=True),
        sa.Column("index", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("window_id", sa.Integer(), nullable=True),
    )
    with op.batch_alter_table("maintenance_windows") as batch:
        batch.add_column(sa.Column("series_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("series_index", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("series_rule", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("series_next", sa.DateTime(), nullable=True))
    # A unique index, not a constraint: SQLite adds it without copying the table.
    op.create_index("uq_maintenance_windows_series_occurrence", "maintenance_windows", ["series_id", "series_index"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_maintenance_windows_series_occurrence", table_name="maintenance_windows")
    with op.batch_alter_table("maintenance_windows") as batch:
        batch.drop_column("series_next")
        batch.drop_column("series_rule")
        batch.drop_column("series_index")
        batch.drop_column("series_id")
    op.drop_table("series_occurrences")
    op.drop_table("maintenance_series")
