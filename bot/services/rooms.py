"""A channel per incident (SITREP_INCIDENT_CHANNELS=on): declaring also opens
`#inc-<number>-<slug>`, invites the declarer and posts the summary there; every update and
the resolution are posted there as well as in the announcement's thread, and the summary is
kept current; SITREP_ARCHIVE_AFTER hours after the resolution the channel is archived (a
`Reminder` row of kind `archive`, claimed exactly once like every reminder).

The room is extra: the status page already has the change when any of this runs, so every
Slack refusal or outage here is a sentence for the person (a warning in their private
answer), never a failed declaration or update."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import aiohttp

from bot.clients.slack import UNREADABLE_ANSWER
from bot.context import AppContext
from bot.messages import incident as messages
from bot.messages.format import fit
from bot.slack.channel import Message, Posted
from bot.slack.rooms import NOT_ALLOWED, Opened, Rooms, scope_for
from store import incidents as incident_store
from store.models import Incident, Reminder
from store.states import ReminderKind

log = logging.getLogger(__name__)

#: Slack not answering at all (as opposed to answering with an error).
UNREACHABLE = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


def _why_not_opened(incident: Incident, opened: Opened, *, private: bool) -> str:
    """The declarer's warning when the room could not be created."""
    head = f"Incident #{incident.id} is declared and announced, but I could not open its own channel: "
    error = fit(opened.error, 100)  # Slack's code, shown as it came
    if opened.error == "name_taken":
        names = ", ".join(f"`#{name}`" for name in opened.tried)
        return head + f"the names {names} are taken. Create a channel by hand if you want one."
    if opened.error == "missing_scope":
        return head + (
            f"the sitrep app lacks the `{scope_for(private)}` scope. Ask whoever runs sitrep to reinstall it "
            "from `manifest.channels.yml`, or to turn SITREP_INCIDENT_CHANNELS off."
        )
    if opened.error in NOT_ALLOWED:
        return head + f"Slack does not allow the app to create channels here (`{error}`)."
    if opened.error == UNREADABLE_ANSWER:  # it may have been made: only the answer was lost
        return head + (
            f"Slack's answer could not be read (`{error}`); the channel may exist anyway. "
            f"Look for `#inc-{incident.id}-…` before creating one by hand."
        )
    return head + f"Slack refused (`{error}`)."


class IncidentRooms:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.rooms = Rooms(ctx.slack)

    @property
    def enabled(self) -> bool:
        return self.ctx.settings.sitrep_incident_channels

    async def open(self, incident: Incident) -> list[str]:
        """After a declaration was announced: create the room, invite the declarer, post the
        summary, and show the room on the announcement. Returns warnings for the declarer."""
        if not self.enabled:
            return []
        private = self.ctx.settings.sitrep_incident_channel_private
        try:
            opened = await self.rooms.open(incident.id, incident.title, private=private)
        except UNREACHABLE as exc:
            log.warning("incident #%s: Slack did not answer conversations.create (%s)", incident.id, type(exc).__name__)
            return [
                f"Incident #{incident.id} is declared and announced, but Slack did not answer when I tried to open its own channel."
            ]
        if opened.channel_id is None:
            return [_why_not_opened(incident, opened, private=private)]
        log.info("incident #%s: opened its channel #%s (%s)", incident.id, opened.name, opened.channel_id)
        async with self.ctx.db.session() as session, session.begin():
            stored = await incident_store.get_incident(session, incident.id)
            stored.room_channel_id = opened.channel_id
        warnings = []
        try:
            refused = await self.rooms.invite(opened.channel_id, incident.declared_by)
        except UNREACHABLE as exc:
            log.warning("incident #%s: Slack did not answer conversations.invite (%s)", incident.id, type(exc).__name__)
            refused = "no answer from Slack"
        if refused:
            warnings.append(
                f"I opened <#{opened.channel_id}> for incident #{incident.id} but could not add you to it "
                f"(`{fit(refused, 100)}`): join it yourself, or ask someone in it to add you."
            )
        incident = await self._reload(incident.id)
        warning = await self.mirror(incident, None)
        if warning:
            warnings.append(warning)
        # The announcement now shows the room; it already went out, so a refusal only logs.
        if incident.message_ts:
            at = Posted(incident.channel_id, incident.message_ts)
            await self.ctx.channel.quietly(
                lambda: self.ctx.channel.refresh(at, messages.announcement(incident)),
                what=f"incident #{incident.id}: showing its channel on the announcement",
            )
        return warnings

    async def mirror(self, incident: Incident, post: Message | None) -> str | None:
        """In the room (if it has one): the summary posted if it never was, `post` (an update
        or the resolution) posted, the summary edited to match. A warning if Slack refused."""
        if not incident.room_channel_id:
            return None
        room = self.ctx.channel_in(incident.room_channel_id)

        async def step() -> None:
            if not incident.room_message_ts:
                # Never posted (Slack refused it then): the summary first, already current.
                posted = await room.announce(messages.room_summary(incident))
                await self._remember(incident.id, posted)
                if post is not None:
                    await room.announce(post)
                return
            if post is not None:
                await room.announce(post)
            await room.refresh(Posted(incident.room_channel_id, incident.room_message_ts), messages.room_summary(incident))

        try:
            return await room.after_upstream(
                step, what=f"incident #{incident.id}'s channel", upstream="the status page", then="The next update tries again."
            )
        except UNREACHABLE as exc:
            log.warning("incident #%s: Slack did not answer in its channel (%s)", incident.id, type(exc).__name__)
            return f"Slack did not answer when I posted in <#{incident.room_channel_id}>. The next update tries again."

    async def plan_archive(self, incident: Incident) -> None:
        """After the resolution: archive the room SITREP_ARCHIVE_AFTER hours later (0: never)."""
        hours = self.ctx.settings.sitrep_archive_after
        if not incident.room_channel_id or hours <= 0 or incident.resolved_at is None:
            return
        async with self.ctx.db.session() as session, session.begin():
            session.add(
                Reminder(incident_id=incident.id, kind=ReminderKind.ARCHIVE, due_at=incident.resolved_at + timedelta(hours=hours))
            )
        await self.ctx.wake()

    async def _remember(self, incident_id: int, posted: Posted) -> None:
        async with self.ctx.db.session() as session, session.begin():
            stored = await incident_store.get_incident(session, incident_id)
            stored.room_message_ts = posted.ts

    async def _reload(self, incident_id: int) -> Incident:
        async with self.ctx.db.session() as session:
            return await incident_store.get_incident(session, incident_id)
