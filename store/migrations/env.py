"""Run by Alembic for every command: migrations always run on the connection sitrep hands
over (`store.migrations.upgrade`), inside the caller's transaction and lock."""

from __future__ import annotations

from alembic import context

from store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run migrations with `sitrep migrate` (it sets DATABASE_URL's connection and the lock)")

# render_as_batch: SQLite alters a table by copying it; Alembic's batch mode does that for us.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
