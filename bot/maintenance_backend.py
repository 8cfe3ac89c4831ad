"""One interface over the two maintenance APIs, so nothing above it knows which is behind it.

* ``StatusPageMaintenance`` (seed 000): a window is an incident of ``Type: "Maintenance"``;
  it can be created and resolved (our "cancel") but not edited, and the API lists only
  the windows someone has marked in progress — possibly late, so absence from that list
  says nothing about a window's end (see ``scheduler/sync.py``).
* ``AppFirstMaintenance`` (seed 003): full create, update, delete and a complete, paged list.

What a backend cannot do is said by its capability attributes, which the service checks
*before* calling; a call it cannot make raises :class:`bot.user_errors.NotSupported` with a
sentence a person can read. Every write returns a :class:`BackendWindow` built from the
server's reply where the server sends one (AppFirst may store other times than it was sent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, runtime_checkable

from bot.errors import UpstreamNotFound
from bot.user_errors import NotSupported

if TYPE_CHECKING:
    from bot.appfirst import AppFirstClient
    from bot.appfirst import MaintenanceWindow as AppFirstWindow
    from bot.settings import Settings
    from bot.statuspage import StatusPageClient

__all__ = [
    "BackendWindow",
    "MaintenanceBackend",
    "StatusPageMaintenance",
    "AppFirstMaintenance",
    "make_backend",
]

BackendName = Literal["statuspage", "appfirst"]


@dataclass(frozen=True)
class BackendWindow:
    """A window as the upstream reports it, whichever API that is.

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
    #: Times, title and targets can be changed after creation.
    can_edit: bool
    #: A window can be called off (AppFirst deletes it; the status page resolves its incident).
    can_cancel: bool
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


class StatusPageMaintenance:
    """Seed 000: create as an incident of Type Maintenance, cancel = resolve, list = in progress."""

    name: ClassVar[BackendName] = "statuspage"
    service = "the status page"
    can_edit = False
    can_cancel = True
    lists_all = False
    uses_servers = False
    has_description = True
    title_label = "Title"
    replies_with_times = False  # the create reply is only the new ID

    def __init__(self, client: StatusPageClient):
        self.client = client

    def __repr__(self) -> str:
        return f"StatusPageMaintenance({self.client!r})"

    async def create(
        self,
        *,
        title: str,
        description: str,
        start: datetime,
        end: datetime,
        components: Sequence[str] = (),
        servers: Sequence[int] = (),
    ) -> BackendWindow:
        from bot.statuspage import MaintenanceCreateModel

        upstream_id = await self.client.create_maintenance(
            MaintenanceCreateModel(
                title=title,
                description=description,
                start_date=start,
                end_date=end,
                affected_components=list(components),
            )
        )
        # The reply is only the new ID: what was sent is what it stored.
        return BackendWindow(
            upstream_id=upstream_id,
            title=title,
            start=start,
            end=end,
            components=tuple(components),
            in_progress=None,
        )

    async def update(self, upstream_id: str, **_fields) -> BackendWindow:
        raise NotSupported(
            "Editing a maintenance window is not supported on this backend: the status page has no way to change "
            "a window's times. Cancel it with `/maintenance cancel` and schedule a new one."
        )

    async def cancel(self, upstream_id: str) -> None:
        await self.client.resolve_incident(upstream_id)

    async def list_windows(self) -> list[BackendWindow]:
        ongoing = await self.client.ongoing_maintenance()
        return [
            BackendWindow(
                upstream_id=item.incident_id,
                title=item.title,
                start=item.start_date,
                end=item.end_date,
                in_progress=True,
            )
            for item in ongoing
        ]

    async def in_progress(self) -> list[BackendWindow]:
        return await self.list_windows()

    async def exists(self, upstream_id: str) -> bool:
        # No read of one window on the status page; its list is never taken as complete.
        return True


class AppFirstMaintenance:
    """Seed 003: full CRUD; the server's reply, not the request, is the truth."""

    name: ClassVar[BackendName] = "appfirst"
    service = "AppFirst"
    can_edit = True
    can_cancel = True
    lists_all = True
    uses_servers = True
    has_description = False
    title_label = "Reason"
    replies_with_times = True

    def __init__(self, client: AppFirstClient):
        self.client = client

    def __repr__(self) -> str:
        return f"AppFirstMaintenance({self.client!r})"

    @staticmethod
    def _window(window: AppFirstWindow) -> BackendWindow:
        in_progress = None
        if window.started is not None and window.ended is not None:
            in_progress = window.started and not window.ended
        return BackendWindow(
            upstream_id=str(window.id),
            title=window.reason,
            start=window.start,
            end=window.end,
            servers=tuple(window.servers),
            in_progress=in_progress,
        )

    @staticmethod
    def _id(upstream_id: str) -> int:
        text = str(upstream_id).strip()
        if not text.isdigit():
            raise ValueError(f"AppFirst window IDs are numbers, not {upstream_id!r}")
        return int(text)

    async def create(
        self,
        *,
        title: str,
        description: str,
        start: datetime,
        end: datetime,
        components: Sequence[str] = (),
        servers: Sequence[int] = (),
    ) -> BackendWindow:
        created = await self.client.create_window(start=start, end=end, reason=title, servers=servers)
        return self._window(created)

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
    ) -> BackendWindow:
        updated = await self.client.update_window(
            self._id(upstream_id), start=start, end=end, reason=title, servers=servers
        )
        return self._window(updated)

    async def cancel(self, upstream_id: str) -> None:
        try:
            await self.client.delete_window(self._id(upstream_id))
        except UpstreamNotFound:
            # Already gone upstream: the window is cancelled either way.
            return

    async def list_windows(self) -> list[BackendWindow]:
        return [self._window(w) for w in await self.client.list_windows()]

    async def in_progress(self) -> list[BackendWindow]:
        return [w for w in await self.list_windows() if w.in_progress]

    async def exists(self, upstream_id: str) -> bool:
        try:
            await self.client.get_window(self._id(upstream_id))
        except UpstreamNotFound:
            return False
        return True


def make_backend(
    settings: Settings, *, statuspage: StatusPageClient | None, appfirst: AppFirstClient | None
) -> MaintenanceBackend | None:
    """The backend ``MAINTENANCE_BACKEND`` names, or None when that API is not configured."""
    if settings.maintenance_backend == "appfirst":
        return AppFirstMaintenance(appfirst) if appfirst is not None else None
    return StatusPageMaintenance(statuspage) if statuspage is not None else None
