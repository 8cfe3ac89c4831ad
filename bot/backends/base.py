"""One interface over the two maintenance APIs, so nothing above it knows which is behind it.

* ``StatusPageMaintenance`` (seed 000): a window is an incident of ``Type: "Maintenance"``;
  it can be created and resolved (our "cancel") but not edited, and the API lists only
  the windows someone has marked in progress — possibly late, so absence from that list
  says nothing about a window's end (see ``scheduler/sync.py``).
* ``AppFirstMaintenance`` (seed 003): full create, update, delete and a complete, paged list.

What a backend cannot do is said by its capability attributes, which the service checks
*before* calling; a call it cannot make raises :class:`bot.errors.NotSupported` with a
sentence a person can read. Every write returns a :class:`BackendWindow` built from the
server's reply where the server sends one (AppFirst may store other times than it was sent).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    pass

__all__ = [
    "BackendWindow",
    "MaintenanceBackend",
]

BackendName = Literal["statuspage", "appfirst"]


class BackendWindow(NamedTuple):
    """A window as the upstream reports it, whichever API that is.

    A named tuple, not a dataclass: light to make and compare. The collector keeps tracking
    it all the same (it lets go only of plain tuples), so a sync over 50,000 windows pauses
    the collector while it holds them (`scheduler.sync`).

    ``start``/``end`` are ``None`` when the API does not say (the status page's in-progress
    list has no end in seed 000); ``in_progress`` is ``None`` when the reply does not say.
    """

    upstream_id: str
    title: str
    start: datetime | None
    end: datetime | None
    servers: tuple[int, ...] = ()
    components: tuple[str, ...] = ()
    in_progress: bool | None = None


@runtime_checkable
class MaintenanceBackend(Protocol):
    """What the maintenance service may ask of an upstream."""

    #: ``statuspage`` or ``appfirst``: stored on every window (``MaintenanceWindow.backend``).
    name: BackendName
    #: How the upstream is called in sentences ("the status page", "AppFirst").
    service: str
    #: The same at the start of a sentence or a label ("The status page", "AppFirst").
    display_name: str
    #: Where a window made outside Slack was made ("on the status page", "in AppFirst").
    origin: str
    #: What cancelling does there, said in the cancel form.
    cancel_effect: str
    #: Times, title and targets can be changed after creation.
    can_edit: bool
    #: ``list_windows`` returns every window, so one missing from it was deleted upstream.
    #: False where it lists only windows in progress (the status page).
    lists_all: bool
    #: The form asks for server IDs (AppFirst) instead of components (status page).
    uses_servers: bool
    #: The form has a description field.
    has_description: bool
    #: What the form calls the title ("Title" or "Reason").
    title_label: str
    #: A write's reply carries the times the server kept, which may not be the ones sent
    #: (AppFirst); the service learns the difference (`bot.services.server_times`).
    replies_with_times: bool
    #: The finest time the upstream takes: times are sent cut to it (AppFirst: whole minutes).
    time_step: timedelta

    async def create(
        self,
        *,
        title: str,
        description: str,
        start: datetime,
        end: datetime,
        components: Sequence[str] = (),
        servers: Sequence[int] = (),
    ) -> BackendWindow: ...

    async def update(
        self,
        upstream_id: str,
        *,
        title: str,
        description: str,
        start: datetime,
        end: datetime,
        components: Sequence[str] = (),
        servers: Sequence[int] = (),
    ) -> BackendWindow: ...

    async def cancel(self, upstream_id: str) -> None: ...

    async def list_windows(self) -> list[BackendWindow]: ...

    async def in_progress(self) -> list[BackendWindow]: ...

    async def exists(self, upstream_id: str) -> bool:
        """Asked before the sync cancels a window missing from a list (pages can shift)."""
        ...


def end_now_for(now: datetime, start: datetime, step: timedelta) -> datetime:
    """The end to send for "end now": `now` rounded up to whole steps from the start, and at least one
    step after the start, so a window ended in its first minute is not sent an end equal to its
    start once cut to the minute (AppFirst refuses that)."""
    steps = -((start - now) // step) if now > start else 1
    return start + max(steps, 1) * step
