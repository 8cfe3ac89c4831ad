"""Rolling recurring maintenance forward: each pass creates the occurrences that entered
the horizon (`SITREP_ANNOUNCE_HORIZON` days) since the last, on whichever replica runs it
(each occurrence is claimed, so replicas rolling at once create it once)."""

from __future__ import annotations

import logging

from bot.context import AppContext
from bot.services.maintenance import MaintenanceService

log = logging.getLogger(__name__)


async def roll_series(ctx: AppContext) -> int:
    """One pass over every series; how many occurrences this replica created."""
    if ctx.maintenance is None:
        return 0
    made = await MaintenanceService(ctx).series.roll_forward()
    if made:
        log.info("created %d occurrence(s) of recurring maintenance", made)
    return made
