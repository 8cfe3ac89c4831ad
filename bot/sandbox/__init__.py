"""`sitrep run --sandbox`: try every command in a Slack workspace before connecting a real
status page. Stand-ins for the status-page API (seeds 004/000) and the AppFirst API (seed 003)
run on loopback inside the process, answer as the seeds describe, and forget everything when
the process stops; so does the throwaway database the sandbox uses instead of DATABASE_URL,
so nothing tried here mixes with a real store."""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
from pathlib import Path

from pydantic import SecretStr

from bot.sandbox.appfirst import AppFirstStandIn
from bot.sandbox.server import LoopbackServer
from bot.sandbox.statuspage import StatusPageStandIn
from bot.settings import Component, Settings

log = logging.getLogger(__name__)

# Offered in the forms when SITREP_COMPONENTS is unset; the first is seed 004's own example.
SANDBOX_COMPONENTS = (
    Component(name="API", id="3fa85f64-5717-4562-b3fc-2c963f66afa0"),
    Component(name="Website", id="3fa85f64-5717-4562-b3fc-2c963f66afa1"),
)
SANDBOX_EMAIL = "sandbox@sitrep.invalid"


class Sandbox:
    """Both stand-ins, their fresh credentials and the throwaway database, for one process."""

    def __init__(self) -> None:
        self.statuspage = StatusPageStandIn(api_key=secrets.token_urlsafe(16))
        # Nobody marks windows in progress on a stand-in: it lists them by their times.
        self.statuspage.progress_by_clock = True
        self.appfirst = AppFirstStandIn(SANDBOX_EMAIL, secrets.token_urlsafe(16))
        self._servers = [LoopbackServer(self.statuspage), LoopbackServer(self.appfirst)]
        self._folder: Path | None = None

    async def start(self) -> None:
        for server in self._servers:
            await server.start()
        self._folder = Path(tempfile.mkdtemp(prefix="sitrep-sandbox-"))

    async def stop(self) -> None:
        for server in self._servers:
            await server.stop()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def configure(self, settings: Settings) -> Settings:
        """The settings pointed at the running stand-ins and the throwaway database."""
        assert self._folder is not None, "start the sandbox first"
        ignored = [
            name
            for name, value in (
                ("STATUSPAGE_URL", settings.statuspage_url),
                ("APPFIRST_URL", settings.appfirst_url),
                ("DATABASE_URL", settings.database_url if "database_url" in settings.model_fields_set else None),
            )
            if value
        ]
        if ignored:
            log.warning("sandbox: %s not used (the sandbox has its own)", ", ".join(ignored))
        return settings.model_copy(
            update={
                "statuspage_url": self.statuspage.url,
                "statuspage_api_key": SecretStr(self.statuspage.api_key),
                "appfirst_url": self.appfirst.url,
                "appfirst_email": self.appfirst.email,
                "appfirst_api_key": SecretStr(self.appfirst.api_key),
                "database_url": f"sqlite:///{self._folder / 'sitrep-sandbox.db'}",
                "sitrep_components": settings.sitrep_components or SANDBOX_COMPONENTS,
            }
        )
