"""Maintenance backends: the interface in `base.py`, one file per implementation; the
settings pick one."""

from __future__ import annotations

from bot.backends.appfirst import AppFirstMaintenance
from bot.backends.base import BackendWindow, MaintenanceBackend
from bot.backends.statuspage import StatusPageMaintenance
from bot.clients.appfirst import AppFirstClient
from bot.clients.statuspage import StatusPageClient
from bot.settings import Settings

__all__ = ["AppFirstMaintenance", "BackendWindow", "MaintenanceBackend", "StatusPageMaintenance", "make_backend"]


def make_backend(
    settings: Settings, *, statuspage: StatusPageClient | None, appfirst: AppFirstClient | None
) -> MaintenanceBackend | None:
    """The backend ``MAINTENANCE_BACKEND`` names, or None when that API is not configured."""
    if settings.maintenance_backend == "appfirst":
        return AppFirstMaintenance(appfirst) if appfirst is not None else None
    return StatusPageMaintenance(statuspage) if statuspage is not None else None
