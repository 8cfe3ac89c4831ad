"""The database's own clock, for claim ages. Replicas' host clocks may disagree (and tests
inject one); a claim stamped and judged by the one database every replica shares cannot be
taken over early because one host runs fast.

`db_utc_now(offset)` compiles to naive UTC in the form each database stores and compares
`UTCDateTime` columns: PostgreSQL's `now()` is a `timestamptz`, turned into UTC wall time
for the `timestamp without time zone` columns (whatever the server's TimeZone); SQLite
keeps text, so it is `strftime` in the same `YYYY-MM-DD HH:MM:SS.fff` shape SQLAlchemy
writes (text comparison then orders instants correctly)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Float
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

from store.models import UTCDateTime


class db_utc_now(FunctionElement):  # noqa: N801 - reads as the SQL function it stands for
    """The database's current UTC time, plus `offset` (negative: in the past)."""

    type = UTCDateTime()
    # Cacheable, keyed on the offset: every claim and its check hold one, and a statement
    # SQLAlchemy cannot cache is compiled again each time (a third of a reminder's CPU).
    inherit_cache = True
    _traverse_internals = FunctionElement._traverse_internals + [("offset_seconds", InternalTraversal.dp_plain_obj)]

    def __init__(self, offset: timedelta = timedelta(0)):
        self.offset_seconds = offset.total_seconds()
        super().__init__()


@compiles(db_utc_now)
def _default(element: db_utc_now, compiler, **kw) -> str:
    return _postgresql(element, compiler, **kw)


@compiles(db_utc_now, "postgresql")
def _postgresql(element: db_utc_now, compiler, **kw) -> str:
    now = "(statement_timestamp() AT TIME ZONE 'UTC')"
    if element.offset_seconds:
        return f"({now} + make_interval(secs => {float(element.offset_seconds)!r}))"
    return now


@compiles(db_utc_now, "sqlite")
def _sqlite(element: db_utc_now, compiler, **kw) -> str:
    if element.offset_seconds:
        return f"strftime('%Y-%m-%d %H:%M:%f', 'now', '{float(element.offset_seconds):+f} seconds')"
    return "strftime('%Y-%m-%d %H:%M:%f', 'now')"


class db_epoch_now(FunctionElement):  # noqa: N801 - reads as the SQL function it stands for
    """The database's current time in seconds since the epoch (a float), for arithmetic
    that both databases do the same way."""

    type = Float()
    inherit_cache = True


@compiles(db_epoch_now)
def _epoch_default(element: db_epoch_now, compiler, **kw) -> str:
    return "extract(epoch from statement_timestamp())"


@compiles(db_epoch_now, "sqlite")
def _epoch_sqlite(element: db_epoch_now, compiler, **kw) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"
