"""The PostgreSQL half of the suite: a fresh database per test run on the server every
developer and CI machine has at 127.0.0.1:5432, dropped at the end of the run."""

from __future__ import annotations

import asyncio
import os
import secrets
from contextlib import contextmanager

from sqlalchemy.engine import make_url

# Where the server is; `SITREP_TEST_POSTGRES` points elsewhere (a database to connect to
# for CREATE DATABASE, not the one the tests use).
ADMIN_URL = os.environ.get("SITREP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def connect_kwargs(url: str) -> dict:
    u = make_url(url)
    return {"host": u.host, "port": u.port or 5432, "user": u.username, "password": u.password, "database": u.database}


async def _admin(*statements: str) -> list:
    import asyncpg  # a test dependency of the PostgreSQL half only

    conn = await asyncpg.connect(**connect_kwargs(ADMIN_URL), timeout=5)
    try:
        return [await conn.fetch(s) for s in statements]
    finally:
        await conn.close()


def unreachable() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it can."""
    try:
        asyncio.run(_admin("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - the reason is the skip message
        return f"PostgreSQL is not reachable at {make_url(ADMIN_URL).render_as_string()} ({type(exc).__name__}: {exc})"
    return None


class PostgresDatabases:
    """Creates databases named after this run; `drop_all()` removes every one it made."""

    def __init__(self) -> None:
        self.prefix = f"sitrep_test_{secrets.token_hex(4)}"
        self.made: list[str] = []

    def create(self, suffix: str = "") -> str:
        name = f"{self.prefix}{suffix}"
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
        self.made.append(name)
        return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    def empty(self, url: str) -> None:
        """Every table but Alembic's emptied, numbering restarted: the next test starts clean
        on an up-to-date schema. A stopped bot leaves no connection behind (its stop waits
        for cancelled work to unwind); one that did, idle in a transaction, would hold a lock
        TRUNCATE waits on: after 10 s the test fails naming the connections left."""

        async def go():
            import asyncpg

            conn = await asyncpg.connect(**connect_kwargs(url), timeout=5)
            try:
                rows = await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                )
                if rows:
                    names = ", ".join(f'"{r["tablename"]}"' for r in rows)
                    await conn.execute("SET lock_timeout = '10s'")
                    try:
                        await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
                    except asyncpg.LockNotAvailableError:
                        left = await conn.fetch(
                            "SELECT state, query FROM pg_stat_activity"
                            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        )
                        raise AssertionError(
                            f"an earlier test left connections holding locks: {[tuple(r) for r in left]}"
                        ) from None
            finally:
                await conn.close()

        asyncio.run(go())

    def drop_all(self) -> None:
        asyncio.run(_admin(*(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in self.made)))
        self.made.clear()


@contextmanager
def connections_refused(url: str):
    """The database of `url` out for the block's length, as a failover or a restart makes it:
    every open connection to it is cut and new ones are refused; then it takes them again."""
    name = make_url(url).database
    asyncio.run(
        _admin(
            f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false',
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
        )
    )
    try:
        yield
    finally:
        asyncio.run(_admin(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
