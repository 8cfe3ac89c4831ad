"""Alembic, configured from code (no alembic.ini at run time): the scripts live beside this
file and travel in the wheel. `upgrade()` runs on a connection the caller already holds, so
the caller's lock covers the whole upgrade.

Alembic is imported only when a schema has to change or an unknown revision be looked up:
every start but a database's first finds it at `HEAD`, and importing Alembic (with Mako,
and Pygments where it is installed) was a tenth of a process's start-up."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

HERE = Path(__file__).parent
FIRST = "0001"  # today's models before migrations existed: what `create_all` used to make
#: The newest script in versions/. A new migration moves it (tests/test_migrations.py checks
#: it against Alembic's own reading of the scripts).
HEAD = "0017"
#: Alembic's table, one row of one column `version_num` (its defaults, which env.py keeps).
VERSION_TABLE = "alembic_version"


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config  # noqa: PLC0415 - Alembic only when a schema changes (start-up cost)

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def scripts() -> ScriptDirectory:
    """The revision scripts, read once per process (reading them compiles every file)."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - (same reason)

    return ScriptDirectory.from_config(alembic_config())


def current(connection: Connection) -> str | None:
    """The revision the schema is at, None for an empty database: Alembic's one row, read
    without Alembic."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def known(revision: str) -> bool:
    if revision == HEAD:
        return True
    try:
        return scripts().get_revision(revision) is not None
    except Exception:  # noqa: BLE001 - alembic's resolution errors: not one of ours
        return False


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Upgrade to `revision`. A database made by `create_tables()` before there were
    migrations holds the first revision's schema without saying so: it is stamped first."""
    from alembic import command  # noqa: PLC0415 - (same reason)

    cfg = alembic_config(connection)
    if current(connection) is None and inspect(connection).has_table("incidents"):
        command.stamp(cfg, FIRST)
    command.upgrade(cfg, revision)
