"""Maintenance backends: the interface in `base.py`, one file per implementation; the
settings pick one."""

from __future__ import annotations

from bot.backends.appfirst import AppFirstMaintenance
from bot.backends.base import BackendWindow, MaintenanceBackend
from bot.backends.statuspage import StatusPageMaintenance
from bot.clients.appfirst import AppFirstClient
from bot.clients.statuspage import StatusPageClient
from bot.settings import Settings

__all__ = [
    "AppFirstMaintenance",
    "BackendWindow",
    "MaintenanceBackend",
    "StatusPageMaintenance",
    "backend_named",
    "make_backend",
]

_BY_NAME: dict[str, type[MaintenanceBackend]] = {
    StatusPageMaintenance.name: StatusPageMaintenance,
    AppFirstMaintenance.name: AppFirstMaintenance,
}


def backend_named(name: str) -> type[MaintenanceBackend]:
    """The backend class a stored window names (`MaintenanceWindow.backend`), for its
    names and capabilities where only the stored row is at hand."""
    return _BY_NAME[name]


def make_backend(
    settings: Settings, *, statuspage: StatusPageClient | None, appfirst: AppFirstClient | None
) -> MaintenanceBackend | None:
    """The backend ``MAINTENANCE_BACKEND`` names, or None when that API is not configured."""
    if settings.maintenance_backend == "appfirst":
        return AppFirstMaintenance(appfirst) if appfirst is not None else None
    return StatusPageMaintenance(statuspage) if statuspage is not None else None
