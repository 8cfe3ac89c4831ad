"""The status page as a maintenance backend (seed 000): a window is an incident of
``Type: "Maintenance"``; it can be created and resolved (our "cancel") but not edited, and the
API lists only the windows someone has marked in progress — possibly late, so absence from
that list says nothing about a window's end (see ``scheduler/sync.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import ClassVar

from bot.backends.base import BackendName, BackendWindow
from bot.clients.statuspage import MaintenanceCreateModel, StatusPageClient
from bot.errors import NotSupported


class StatusPageMaintenance:
    """Seed 000: create as an incident of Type Maintenance, cancel = resolve, list = in progress."""

    name: ClassVar[BackendName] = "statuspage"
    service = "the status page"
    display_name = "The status page"
    origin = "on the status page"
    cancel_effect = "The status page will resolve its maintenance."
    can_edit = False
    lists_all = False
    uses_servers = False
    has_description = True
    title_label = "Title"
    replies_with_times = False  # the create reply is only the new ID
    time_step = timedelta(seconds=1)  # ISO times to the second

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
