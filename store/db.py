"""The async engine and session factory, and the schema brought to the head revision under a
lock: a PostgreSQL advisory lock (replicas starting together migrate once), a lock file
beside a SQLite database. The same two kinds of lock keep a periodic job (the sync) to one
replica at a time: `exclusive()`."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import event, false, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    InvalidRequestError,
    NoSuchModuleError,
    SQLAlchemyError,
)
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from store import migrations
from store.libpq import ParameterRefused, driver_arguments
from store.models import UpstreamFact

log = logging.getLogger(__name__)

T = TypeVar("T")


class StoreTimeout(TimeoutError):
    """The database did not answer within a `bounded` call's time (locked by another process)."""


#: What a sick database raises around work that only touches the database: locked past a
#: bound (`StoreTimeout`), read-only, full or gone (the driver's error, wrapped by SQLAlchemy,
#: or the connection's own `OSError`).
STORE_FAILURES = (StoreTimeout, SQLAlchemyError, OSError)


def store_reason(exc: BaseException) -> str:
    """Why the database refused, in words for the person and the operator (no URL, no secret)."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    if isinstance(exc, ConnectionRefusedError) or "connection refused" in text or "connect call failed" in text:
        return "the database is not answering (its server refused the connection)"
    if isinstance(exc, TimeoutError) or "locked" in text or "busy" in text:
        return "the database is locked by another process"
    if "readonly" in text or "read-only" in text or "read only" in text:
        return "the database is read-only"
    if "unable to open" in text:
        return "the database file cannot be opened"
    if "i/o error" in text:
        return "the database cannot be written (disk I/O error)"
    if "disk is full" in text or "no space" in text:
        return "the database's disk is full"
    return f"the database failed ({type(getattr(exc, 'orig', None) or exc).__name__})"


#: Where a database failure is raised from: an `OSError` out of these came from the database
#: (asyncpg raises a refused connection as it is, SQLAlchemy wraps only DBAPI errors), one out
#: of anything else (aiohttp under slack_sdk: Slack unreachable) did not.
_DATABASE_PACKAGES = ("sqlalchemy", "asyncpg", "aiosqlite", "store")


def is_store_failure(exc: BaseException) -> bool:
    """Whether `exc` is the database failing (gone, locked, read-only, full), not a bug."""
    if isinstance(exc, (StoreTimeout, SQLAlchemyError)):
        return True
    if not isinstance(exc, OSError):
        return False
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__", "").partition(".")[0] in _DATABASE_PACKAGES:
            return True
        tb = tb.tb_next
    return False


class DatabaseUnusable(Exception):
    """`DATABASE_URL` names a database this process cannot use. `str()` completes the
    sentence "DATABASE_URL …" for the operator; it never contains the URL (a password)."""


_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


def async_url(database_url: str) -> str:
    """`DATABASE_URL` is written the ordinary way; the asyncio extension needs an async driver."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise DatabaseUnusable("is not a SQLAlchemy URL (such as sqlite:///sitrep.db)") from None
    if "+" not in url.drivername and url.drivername in _ASYNC_DRIVERS:
        url = url.set(drivername=_ASYNC_DRIVERS[url.drivername])
    return url.render_as_string(hide_password=False)


class Database:
    """One engine per process; sessions are short and opened per unit of work."""

    def __init__(self, database_url: str):
        url = async_url(database_url)
        kwargs: dict = {}
        if url.startswith("sqlite"):
            # Several bot processes may share one SQLite file: wait for locks instead of failing.
            kwargs["connect_args"] = {"timeout": 30}
        elif make_url(url).drivername == "postgresql+asyncpg":
            try:
                parsed, kwargs["connect_args"] = driver_arguments(make_url(url))
            except ParameterRefused as exc:
                raise DatabaseUnusable(str(exc)) from None
            url = parsed.render_as_string(hide_password=False)
        self._sqlite_path = _sqlite_file(url)
        kind = make_url(url).drivername
        try:
            self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        except ImportError as exc:
            raise DatabaseUnusable(
                f"needs the Python package {exc.name or 'for its driver'}, which is not installed ({kind})"
            ) from None
        except NoSuchModuleError:
            raise DatabaseUnusable(f"names a kind of database SQLAlchemy does not know ({kind})") from None
        except InvalidRequestError:
            raise DatabaseUnusable(f"names a driver that is not asynchronous ({kind}); leave the driver out") from None
        except ArgumentError:
            raise DatabaseUnusable("is not a SQLAlchemy URL (such as sqlite:///sitrep.db)") from None
        if url.startswith("sqlite"):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.session = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)
        self._local_locks: dict[str, asyncio.Lock] = {}

    async def upgrade(self) -> str | None:
        """Bring the schema to the head revision; returns the revision it was at (None: empty).
        One process at a time: the others wait for the lock, then find nothing to do."""
        async with self._migration_lock(), self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Held until this transaction commits; PostgreSQL's DDL is transactional, so
                # a replica that waited sees the finished schema and does nothing.
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            was = await conn.run_sync(migrations.current)
            if was is not None and not migrations.known(was):
                raise DatabaseUnusable(
                    f"holds schema revision {was}, which this sitrep does not know (a newer version migrated it)"
                )
            if was != migrations.HEAD:
                await conn.run_sync(migrations.upgrade)
                log.info("database schema upgraded from %s to %s", was or "nothing", migrations.HEAD)
            return was

    async def prepare(self) -> str | None:
        """Upgrade the schema (returns the revision it was at), or raise `DatabaseUnusable` saying why the database cannot be
        used. A SQLite file is tried first with the standard library (open and take the
        write lock), so a bad path is one clear sentence, not a driver thread's traceback."""
        if self._sqlite_path is not None:
            _check_sqlite_writable(self._sqlite_path)
        try:
            return await self.upgrade()
        except (SQLAlchemyError, OSError) as exc:
            reason = getattr(exc, "orig", None) or exc
            raise DatabaseUnusable(f"cannot be opened or written ({type(reason).__name__}: {reason})") from None

    async def revision(self) -> str | None:
        """The schema revision the database is at (None: no schema yet), read without
        writing anything: `sitrep check` never migrates, and never creates a missing SQLite
        file. Raises `DatabaseUnusable` when it cannot be read or holds a newer revision."""
        if self._sqlite_path is not None:
            was = _sqlite_revision(self._sqlite_path)
        else:
            try:
                async with self.engine.connect() as conn:
                    was = await conn.run_sync(migrations.current)
                    await conn.rollback()
            except (SQLAlchemyError, OSError) as exc:
                reason = getattr(exc, "orig", None) or exc
                raise DatabaseUnusable(f"cannot be opened or written ({type(reason).__name__}: {reason})") from None
        if was is not None and not migrations.known(was):
            raise DatabaseUnusable(f"holds schema revision {was}, which this sitrep does not know (a newer version migrated it)")
        return was

    async def check_writable(self, timeout: float = 2.0) -> None:
        """For readiness: commit a write that changes nothing (SQLite: it has to reach the disk,
        so a full disk fails it) or run one in a transaction rolled back (PostgreSQL: refused
        when read-only); raise when that fails or takes longer than `timeout`."""
        if self._sqlite_path is not None:
            # The standard library with a short busy timeout: a locked file answers in `timeout`
            # seconds instead of the pool's 30, and no pooled connection is left mid-wait.
            await asyncio.to_thread(_take_write_lock, self._sqlite_path, timeout, True)
            return
        async with asyncio.timeout(timeout), self.engine.connect() as conn:
            async with conn.begin() as transaction:
                await conn.execute(update(UpstreamFact).where(false()).values(key=UpstreamFact.key))
                await transaction.rollback()

    async def dispose(self, linger: float = 2.0) -> None:
        """Close the pool, after giving calls that were given up on (`bounded`) up to `linger`
        seconds to roll back: their statements may still be waiting for a lock."""
        loop = asyncio.get_running_loop()
        left = [task for task in _given_up if task.get_loop() is loop]
        if left:
            await asyncio.wait(left, timeout=linger)
        await self.engine.dispose()

    @property
    def notifies(self) -> bool:
        """Whether other processes can be told of a change at once (PostgreSQL's LISTEN/NOTIFY)."""
        return self._sqlite_path is None and self.engine.dialect.name == "postgresql"

    async def notify(self, channel: str, payload: str) -> None:
        """Tell every process listening on `channel` (PostgreSQL; nothing elsewhere)."""
        if not self.notifies:
            return
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload})
            await conn.commit()

    async def listen(
        self,
        channel: str,
        heard: Callable[[str], None],
        *,
        until: asyncio.Event,
        listening: Callable[[bool], None] = lambda _on: None,
    ) -> None:
        """Call `heard(payload)` for each notification on `channel` until `until` is set
        (PostgreSQL), and `listening` with True once it listens, False when it stops. On a
        connection of its own, closed afterwards, never given back to the pool still
        listening; raises `ConnectionError` when that connection is lost."""
        conn = await self.engine.connect()
        try:
            driver = (await conn.get_raw_connection()).driver_connection  # asyncpg's connection
            lost = asyncio.Event()

            def note(_conn, _pid, _channel, payload: str) -> None:
                heard(payload)

            driver.add_termination_listener(lambda _conn: lost.set())
            await driver.add_listener(channel, note)
            listening(True)
            stopped, gone = asyncio.ensure_future(until.wait()), asyncio.ensure_future(lost.wait())
            try:
                await asyncio.wait({stopped, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
                gone.cancel()
            if lost.is_set() and not until.is_set():
                raise ConnectionError(f"the connection listening on {channel} was lost")
        finally:
            listening(False)
            await conn.invalidate()
            await conn.close()

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str):
        """Yield True to the one process (of all sharing this database) that holds the lock
        `name`, False at once to the others: they skip the work rather than wait for it.

        PostgreSQL: a session advisory lock (`pg_try_advisory_lock`) on a connection kept for
        the duration; it dies with the connection, so a replica killed mid-pass never leaves
        it held. SQLite: a non-blocking `flock` on a file beside the database, which the
        kernel releases when the process dies. An in-memory SQLite has one process only."""
        if self._sqlite_path is None and self.engine.dialect.name == "postgresql":
            async with self._advisory_lock(_lock_key(name)) as held:
                yield held
            return
        if self._sqlite_path is None:
            lock = self._local_locks.setdefault(name, asyncio.Lock())
            if lock.locked():
                yield False
                return
            async with lock:
                yield True
            return
        fd = os.open(f"{self._sqlite_path}.{name}-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the lock

    @contextlib.asynccontextmanager
    async def _advisory_lock(self, key: int):
        conn = await self.engine.connect()
        held = False
        try:
            held = bool((await conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key})).scalar())
            await conn.commit()  # a session lock: it needs no open transaction while the work runs
            yield held
        finally:
            try:
                if held:
                    await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    await conn.commit()
            except Exception:  # noqa: BLE001 - never give a connection holding the lock back to the pool
                await conn.invalidate()
            finally:
                await conn.close()

    @contextlib.asynccontextmanager
    async def _migration_lock(self):
        """SQLite has no advisory locks and Alembic's SQLite DDL is not transactional: a lock
        file beside the database keeps two processes on one file from migrating together."""
        if self._sqlite_path is None:
            yield
            return
        fd = os.open(f"{self._sqlite_path}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


async def bounded(work: Awaitable[T], seconds: float) -> T:
    """`work`'s result, or `StoreTimeout` after `seconds` without waiting for it to stop.

    `asyncio.wait_for` waits for a cancelled task to finish, and a session's clean-up (its
    rollback) queues behind a statement waiting out SQLite's 30-second busy timeout on the
    same connection: a bound that waits for the clean-up is no bound. So the task is
    cancelled and left to finish on its own; the write it was doing is rolled back."""
    task = asyncio.ensure_future(work)
    try:
        return await _within(task, seconds)
    except StoreTimeout:
        task.cancel()  # a no-op when the work itself ended in a StoreTimeout
        raise


async def waited(work: Awaitable[T], seconds: float, *, late: Callable[[T], None]) -> T:
    """`work`'s result, or `StoreTimeout` after `seconds`, as `bounded`, but the work is not
    cancelled: a write that may have reached its COMMIT is let finish (a cancel can arrive
    after the database took it, so whether it was written would not be known), and `late`
    is given its result if it succeeds after all, to undo what the caller gave up on."""
    task = asyncio.ensure_future(work)
    try:
        return await _within(task, seconds)
    except StoreTimeout:
        if not task.done():
            task.add_done_callback(lambda ended: None if ended.cancelled() or ended.exception() else late(ended.result()))
        raise


async def _within(task: asyncio.Future[T], seconds: float) -> T:
    """`task`'s result, or `StoreTimeout` after `seconds`, the task left to end on its own
    (`dispose` waits for it)."""
    done, _pending = await asyncio.wait({task}, timeout=seconds)
    if done:
        return task.result()
    _given_up.add(task)
    task.add_done_callback(_forget_late)
    raise StoreTimeout(f"the database did not answer within {seconds:g} s")


# Tasks `bounded` and `waited` gave up on, until they end: `dispose` lets them end first.
_given_up: set[asyncio.Task] = set()


def _forget_late(task: asyncio.Task) -> None:
    """A bounded task that ended after its caller gave up: its error was already answered."""
    _given_up.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.debug("a database call given up on ended later: %s", type(task.exception()).__name__)


# Any fixed 64-bit number, the same in every replica: "sitrep migrations".
_MIGRATION_LOCK_KEY = 0x5173_7265_704D_6967


def _lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a lock's name, the same in every replica."""
    return int.from_bytes(hashlib.sha256(f"sitrep:{name}".encode()).digest()[:8], "big", signed=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Readers never wait for the writer, and a writer waits (busy_timeout) instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    journal = cursor.fetchone()
    # Under WAL (only there: a database that could not take it keeps FULL), NORMAL syncs
    # the WAL file at checkpoints, not at every commit. A commit written to it is the
    # kernel's, so it survives the process dying (a crash, kill -9: what the bot must
    # survive); only an OS crash or power loss may lose the last commits, never corrupt the
    # file. FULL's fsync per commit costs a quarter of a millisecond or more, twice per
    # reminder (bench/pace.py --cost-only).
    if journal is not None and str(journal[0]).lower() == "wal":
        cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL; None for other databases and for an in-memory one."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


def _take_write_lock(path: str, timeout: float, commit: bool = False) -> None:
    """Take the write lock and write, then roll back (or, with `commit`, commit): fails on a
    locked or read-only file. The lock alone is not enough: in WAL mode it lives in the `-shm`
    file, so a read-only database file (opened read-only by SQLite's fallback) still grants it.
    Writing the header's `user_version` back unchanged is refused there, and changes nothing.
    Only a commit reaches the disk (one page in the write-ahead log): a full disk refuses that
    ("database or disk is full") while it grants the lock and the rolled-back write."""
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        done = False
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute(f"PRAGMA user_version = {int(version)}")
            if commit:
                conn.execute("COMMIT")
                done = True
        finally:
            if not done:
                conn.execute("ROLLBACK")
    finally:
        conn.close()


def _sqlite_revision(path: str) -> str | None:
    """The revision in a SQLite file, opened read-only (the engine's connections would switch
    it to WAL); None for a file that does not exist yet, whose folder must then be writable.
    An existing file must be writable too (`_check_sqlite_writable`, which rolls back)."""
    if not os.path.exists(path):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
            raise DatabaseUnusable(
                f"points at a SQLite file that cannot be opened or written ({path}: no writable folder {folder} to create it in)"
            )
        return None
    _check_sqlite_writable(path)
    try:
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'").fetchone():
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
                return str(row[0]) if row else None
            return None
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise DatabaseUnusable(f"points at a SQLite file that cannot be read ({path}: {exc})") from None


def _check_sqlite_writable(path: str) -> None:
    try:
        _take_write_lock(path, 30)
    except sqlite3.Error as exc:
        raise DatabaseUnusable(f"points at a SQLite file that cannot be opened or written ({path}: {exc})") from None
