"""Alembic, configured from code (no alembic.ini at run time): the scripts live beside this
file and travel in the wheel. `upgrade()` runs on a connection the caller already holds, so
the caller's lock covers the whole upgrade."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

HERE = Path(__file__).parent
FIRST = "0001"  # today's models before migrations existed: what `create_all` used to make


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def scripts() -> ScriptDirectory:
    """The revision scripts, read once per process: reading them compiles every file, and a
    start that finds the schema at head (every start but the first) only asks which are known."""
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    return scripts().get_current_head()


def current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def known(revision: str) -> bool:
    try:
        return scripts().get_revision(revision) is not None
    except Exception:  # noqa: BLE001 - alembic's resolution errors: not one of ours
        return False


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Upgrade to `revision`. A database made by `create_tables()` before there were
    migrations holds the first revision's schema without saying so: it is stamped first."""
    cfg = alembic_config(connection)
    if current(connection) is None and inspect(connection).has_table("incidents"):
        command.stamp(cfg, FIRST)
    command.upgrade(cfg, revision)
