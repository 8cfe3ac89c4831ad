"""Alembic migrations: an old database keeps its data on the way to head, the models and the
migrations describe the same schema, and replicas starting together migrate once."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text

from store import migrations
from store.db import Database, DatabaseUnusable
from store.models import Base, MaintenanceWindow
from store.reminders import due
from tests.support.dates import T0
from tests.support.process import SPEC_VARIABLES

BOTH = pytest.mark.parametrize("fresh_database_url", ["sqlite", "postgresql"], indirect=True)


def run(coro_fn, url):
    async def go():
        db = Database(url)
        try:
            return await coro_fn(db)
        finally:
            await db.dispose()

    return asyncio.run(go())


async def at_first_revision_with_data(db: Database, *, versioned: bool = True) -> None:
    """The schema of revision 0001 with a window and its reminder in it, written as SQL (the
    models describe head, not 0001)."""
    async with db.engine.begin() as conn:
        await conn.run_sync(migrations.upgrade, migrations.FIRST)
        await conn.execute(
            text(
                'INSERT INTO maintenance_windows (backend, upstream_id, title, description, start, "end", components,'
                " servers, state, created_at, updated_at) VALUES ('appfirst', '7', 'Old window', '', :t, NULL, '[]',"
                " '[1]', 'scheduled', :t, :t)"
            ),
            {"t": T0.replace(tzinfo=None)},
        )
        await conn.execute(
            text("INSERT INTO reminders (window_id, kind, due_at, state, late) VALUES (1, 'started', :t, 'pending', false)"),
            {"t": T0.replace(tzinfo=None)},
        )
        if not versioned:  # as `create_all` left it before there were migrations
            await conn.execute(text("DROP TABLE alembic_version"))


async def revision_and_rows(db: Database):
    async with db.engine.connect() as conn:
        revision = await conn.run_sync(migrations.current)
    async with db.session() as session:
        window = (await session.execute(select(MaintenanceWindow))).scalar_one()
        reminders = await due(session, T0, stale_after=timedelta(0))
    return revision, (window.title, window.start, window.servers), [(r.kind, r.due_at) for r in reminders]


@BOTH
@pytest.mark.parametrize("versioned", [True, False], ids=["from-0001", "from-create_all"])
def test_an_old_database_with_data_is_upgraded_to_head(fresh_database_url, versioned):
    async def body(db):
        await at_first_revision_with_data(db, versioned=versioned)
        assert await db.prepare() == (migrations.FIRST if versioned else None)  # the revision it was at
        return await revision_and_rows(db)

    revision, window, reminders = run(body, fresh_database_url)
    assert revision == migrations.HEAD != migrations.FIRST
    assert window == ("Old window", T0, [1])
    assert reminders == [("started", T0)]


@BOTH
def test_models_and_migrations_describe_the_same_schema(fresh_database_url):
    async def body(db):
        await db.prepare()
        async with db.engine.connect() as conn:
            return await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))

    assert run(body, fresh_database_url) == []


@BOTH
def test_a_schema_from_a_newer_sitrep_stops_with_one_sentence(fresh_database_url):
    async def body(db):
        await db.prepare()
        async with db.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(DatabaseUnusable) as caught:
            await db.prepare()
        return str(caught.value)

    assert "revision 9999, which this sitrep does not know" in run(body, fresh_database_url)


def test_head_is_the_newest_script():
    """`HEAD` is what Alembic reads off the scripts: a new migration that forgets to move it
    fails here, not as a start that skips the upgrade."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415 - a fresh reading, not the cached one

    assert ScriptDirectory.from_config(migrations.alembic_config()).get_current_head() == migrations.HEAD
    assert migrations.known(migrations.HEAD) and migrations.known(migrations.FIRST) and not migrations.known("9999")


@BOTH
def test_a_start_that_finds_the_schema_at_head_imports_no_alembic_nor_another_dialect(fresh_database_url, tmp_path):
    """Opening a migrated database, as every start but the first does, needs nothing of
    Alembic (its import, with Mako's and Pygments', was a tenth of a start), and a bot on
    SQLite loads no PostgreSQL dialect (another tenth: `store/pace.py` imported it)."""
    run(lambda db: db.prepare(), fresh_database_url)
    program = (
        "import asyncio, sys\n"
        "import bot.app, bot.context\n"
        "from store.db import Database\n"
        "async def main():\n"
        "    db = Database(sys.argv[1])\n"
        "    try:\n"
        "        print(await db.prepare())\n"
        "    finally:\n"
        "        await db.dispose()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
        "print('sqlalchemy.dialects.postgresql' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, fresh_database_url], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    on_postgresql = fresh_database_url.startswith("postgresql")
    assert done.stdout.splitlines() == [migrations.HEAD, "[]", str(on_postgresql)], done.stdout + done.stderr


# --- `sitrep migrate` as a real process ---------------------------------------------------------


def migrate_process(database_url: str, cwd) -> subprocess.Popen:
    """`sitrep migrate` with DATABASE_URL as the only SPEC variable: no Slack setting at all."""
    env = {k: v for k, v in os.environ.items() if k not in SPEC_VARIABLES}
    env |= {"DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "migrate"],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@BOTH
def test_sitrep_migrate_upgrades_then_finds_nothing_to_do(fresh_database_url, tmp_path):
    for expected in (
        f"database: at revision {migrations.HEAD} (was empty)",
        f"database: at revision {migrations.HEAD} (already)",
    ):
        out, err = migrate_process(fresh_database_url, tmp_path).communicate(timeout=60)
        assert out.strip().splitlines()[-1] == expected, out + err
        assert "Traceback" not in err


@pytest.mark.parametrize("fresh_database_url", ["postgresql"], indirect=True)
def test_replicas_migrating_at_once_on_postgresql_migrate_once(fresh_database_url, tmp_path):
    processes = [migrate_process(fresh_database_url, tmp_path) for _ in range(3)]
    results = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], results
    lasts = sorted(out.strip().splitlines()[-1] for out, _ in results)
    head = migrations.HEAD
    assert lasts == [f"database: at revision {head} (already)"] * 2 + [f"database: at revision {head} (was empty)"]


def test_sitrep_migrate_on_an_unusable_database_says_so_in_one_line(tmp_path):
    out, err = migrate_process("postgresql://sitrep:db-password-77@127.0.0.1:1/sitrep", tmp_path).communicate(timeout=60)
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("sitrep: DATABASE_URL cannot be opened or written") and "db-password-77" not in err


def test_sitrep_migrate_needs_only_database_url(tmp_path):
    """A deploy step or init container has the database, not the Slack secrets."""
    url = f"sqlite:///{tmp_path / 'only.db'}"
    process = migrate_process(url, tmp_path)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, out + err
    assert out.strip().splitlines() == [f"database: at revision {migrations.HEAD} (was empty)"], out + err
    assert "Traceback" not in err and "SLACK" not in err and "SITREP_CHANNEL" not in err
    with sqlite3.connect(tmp_path / "only.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(migrations.HEAD,)]


def test_sitrep_migrate_with_a_malformed_database_url_names_it(tmp_path):
    process = migrate_process("not a url", tmp_path)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2 and out == ""
    assert err.strip().splitlines() == [
        "sitrep: DATABASE_URL is not valid: expected a SQLAlchemy URL such as sqlite:///sitrep.db."
    ]
