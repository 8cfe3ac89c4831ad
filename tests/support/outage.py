"""A database out from under a running bot: SQLite's file locked by another process, or
PostgreSQL refusing connections (`database_down` picks by the URL); or one write of it held
at its COMMIT (`committing_slowly`)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from pathlib import Path

from store.db import Database
from tests.support.postgres import connections_refused


def sqlite_path(settings) -> str:
    """The SQLite file of `settings` (or a path given as it is)."""
    if isinstance(settings, Path):
        return str(settings)
    return settings.database_url.removeprefix("sqlite:///")


HOLD_THE_LOCK = """
import sqlite3, sys
holder = sqlite3.connect(sys.argv[1], isolation_level=None)
holder.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
holder.execute("ROLLBACK")
"""


@contextmanager
def locked(settings):
    """Another process holding SQLite's write lock (`BEGIN EXCLUSIVE`), as a migration, a
    backup or an operator's `sqlite3` shell does; released when the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, sqlite_path(settings)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.communicate("\n", timeout=10)


@contextmanager
def database_down(settings):
    """Writes fail for the block's length: the SQLite file locked, or PostgreSQL's
    connections cut and refused."""
    if settings.database_url.startswith("sqlite"):
        with locked(settings):
            yield
    else:
        with connections_refused(settings.database_url):
            yield


@contextmanager
def database_gone(bot, url: str):
    """The bot's store swapped for one at `url` that cannot be reached (a volume gone, a
    server down); the working store is put back and the gone one's pool closed on the bot's
    own loop when the block ends. Left swapped, the working pool would only be closed by the
    garbage collector after the loop is gone, and aiosqlite's threads would then answer into
    a closed loop ("Event loop is closed" in a thread)."""
    working = bot.ctx.db
    gone = Database(url)
    bot.ctx.db = gone
    try:
        yield gone
    finally:
        bot.ctx.db = working
        bot.run(gone.dispose(linger=0))


def committing_slowly(write: Callable[..., Awaitable], gate: threading.Event, cancels: list[str]) -> Callable[..., Awaitable]:
    """`write` (a store function), whose transaction then waits on `gate` before its COMMIT
    and goes on through a cancel meanwhile, as a COMMIT the database already has does: each
    cancel is noted in `cancels` (a caller that gave up on it cannot know it was written)."""

    async def slow(*args, **fields):
        result = await write(*args, **fields)
        opened = asyncio.ensure_future(asyncio.to_thread(gate.wait, 60))
        while not opened.done():
            try:
                await asyncio.shield(opened)
            except asyncio.CancelledError:
                cancels.append("cancelled")
        return result

    return slow
