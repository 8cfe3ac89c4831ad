"""What SQL the bot sends while a test step runs: to prove a cost is bounded (a LIMIT, a
fixed number of statements) rather than assume it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event


class Statements(list):
    """The statements sent, in order (SQL text, parameters bound separately)."""

    def writes(self) -> list[str]:
        return [s for s in self if s.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE")]


@contextmanager
def recorded_statements(engine) -> Iterator[Statements]:
    """Every statement `engine` (an AsyncEngine or a sync one) sends inside the block."""
    sync_engine = getattr(engine, "sync_engine", engine)
    seen = Statements()
    lock = threading.Lock()

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        with lock:
            seen.append(statement)

    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)
