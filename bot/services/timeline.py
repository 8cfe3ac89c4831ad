"""An incident's timeline: every event with who and when (declared, updates, lead changes,
resolution, stored by `bot.services.incidents`) and the messages people pin to it with a
:pushpin: reaction, read fresh from Slack (text, author, permalink) when the reaction comes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from bot.errors import NotFound
from bot.messages.format import escape, truncate
from bot.slack.channel import Posted
from store import incidents as incident_store
from store.models import Incident, IncidentEvent
from store.states import IncidentEventKind

if TYPE_CHECKING:  # annotations only: the context is built above this floor
    from bot.context import AppContext

log = logging.getLogger(__name__)

PIN = "pushpin"
#: A pinned message's text as kept (Slack's own limit on a message is 40,000 characters).
PINNED_TEXT_MAX = 4000


class TimelineService:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    async def events(self, ref: str) -> tuple[Incident, list[IncidentEvent]]:
        """An incident (open or resolved) and its timeline, oldest first."""
        async with self.ctx.db.session() as session:
            incident = await incident_store.find_incident(session, ref)
            if incident is None:
                raise NotFound(f"I don't know an incident `{escape(truncate(ref.strip(), 40))}`. Try `/incident list`.")
            return incident, await incident_store.timeline(session, incident.id)

    async def _incident_of(self, channel: str, ts: str) -> tuple[Incident | None, dict | None]:
        """The incident a reacted-to message belongs to (a reply in its thread in
        SITREP_CHANNEL, or any message in its own channel), and the message as read now."""
        async with self.ctx.db.session() as session:
            room = await incident_store.by_room(session, channel)
        if room is None and channel != self.ctx.settings.sitrep_channel:
            return None, None
        message = await self.ctx.channel_in(channel).read_message(Posted(channel, ts))
        if message is None or room is not None:
            return room, message
        async with self.ctx.db.session() as session:
            return await incident_store.by_announcement(session, channel, message.get("thread_ts") or ts), message

    async def pinned(self, channel: str, ts: str) -> IncidentEvent | None:
        """A :pushpin: on a message: it joins its incident's timeline (once), or nothing
        when it belongs to none."""
        incident, message = await self._incident_of(channel, ts)
        if incident is None or message is None:
            return None
        link = await self.ctx.channel_in(channel).permalink(Posted(channel, ts))
        event = IncidentEvent(
            incident_id=incident.id,
            kind=IncidentEventKind.PINNED,
            status=incident.status,
            text=truncate(message.get("text") or "", PINNED_TEXT_MAX),
            user_id=message.get("user") or message.get("bot_id") or "",
            at=self.ctx.clock(),
            message_ts=ts,
            link=link,
        )
        try:
            async with self.ctx.db.session() as session, session.begin():
                session.add(event)
        except IntegrityError:
            return None  # pinned already (another person's pin, or Slack's retry)
        return event

    async def unpinned(self, channel: str, ts: str) -> bool:
        """The :pushpin: taken off: the message leaves the timeline unless another pin
        remains on it (as read now)."""
        incident, message = await self._incident_of(channel, ts)
        if incident is None:
            return False
        if message is not None and any(r.get("name") == PIN and r.get("count") for r in message.get("reactions") or []):
            return False
        async with self.ctx.db.session() as session, session.begin():
            event = await incident_store.pinned_event(session, incident.id, ts)
            if event is None:
                return False
            await session.delete(event)
        return True
