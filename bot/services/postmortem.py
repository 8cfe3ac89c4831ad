"""The postmortem draft shared in the incident's thread as a Markdown file, exactly once.

One share per incident, owned by a `Reminder` row (kind `postmortem`, unique per incident)
written claimed (`posts.held_row`) in the transaction that calls for it: the resolution, or
`/incident postmortem` when no row exists yet. Whichever comes first shares it; later ones
find the row and point at the thread. A process that dies first leaves the row claimed: the
recovery makes the claim stale and the scheduler delivers it (`scheduler.reminders.DELIVERY`).

The design, and why it is not a tagged reply through `posts.post_once`: sharing a file is
three calls, and only the last one (files.completeUploadExternal into the thread) is seen by
anyone. So the claim guards that one call, as the engine guards a post:

1. a stale claim (its process gone) first reads the thread for a message of the bot's that
   shares a file with this incident's file name (`incident-N-postmortem.md`): found, the
   share is recorded and nothing is shared again. File messages carry no metadata, but they
   do carry the file's name, which is unique per incident, so the name is the tag;
2. the bytes are uploaded (getUploadURLExternal, the POST): the file is private and shared
   nowhere, so repeating this after a crash leaves at most an unshared file, never a share;
3. the claim is checked just before files.completeUploadExternal leaves (fencing), so a
   process whose claim was taken over never shares;
4. it is recorded under the same token. A failure before the share (the upload refused, or
   Slack refusing the completion) hands the row back with a "not before": the scheduler tries
   again, nothing is lost. A completion that may have reached Slack (a timeout) makes the
   claim stale at once: whoever takes it over reads the thread first (1).

A "Postmortem draft for #N" reply tagged for `find_reply` would add a second post to keep
in step with the file (posted but the file not, or the reverse) and find nothing the file's
own name does not."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import IntegrityError

from bot.clients.slack import slack_error
from bot.context import AppContext
from bot.errors import ClaimLost, NotFound
from bot.messages.format import escape, truncate
from bot.messages.postmortem import postmortem
from bot.slack import posts
from bot.slack.channel import Posted, UploadFailed
from bot.slack.posts import RowClaim
from store import incidents as incident_store
from store import reminders as reminder_store
from store.models import Incident, Reminder
from store.reminders import Claim
from store.states import ReminderKind

log = logging.getLogger(__name__)

#: A share that failed before reaching anyone is tried again this long after.
RETRY_AFTER = timedelta(minutes=1)
#: `/incident postmortem` without a reference takes an incident resolved this recently.
RECENT = timedelta(days=1)


def filename(incident_id: int) -> str:
    """The file's name: unique per incident, it is how a taken-over claim finds the share."""
    return f"incident-{incident_id}-postmortem.md"


def title(incident_id: int) -> str:
    return f"Postmortem draft for #{incident_id}"


class Shared(StrEnum):
    """How a share ended, for the person who asked."""

    SHARED = "shared"
    ALREADY = "already"
    """Shared before (or being shared by another process): not shared again."""
    FAILED = "failed"
    """Not shared now: handed back, the scheduler tries again."""
    WAITING = "waiting"
    """The incident's announcement is not posted yet: the share follows it."""


@dataclass(frozen=True)
class Share:
    how: Shared
    incident: Incident
    reason: str | None = None


class PostmortemService:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    async def choose(self, ref: str | None) -> Incident:
        """The incident named (open or resolved); without a name, the only one open, else
        the one resolved most recently (within `RECENT`)."""
        async with self.ctx.db.session() as session:
            if ref:
                incident = await incident_store.find_incident(session, ref)
                if incident is None:
                    raise NotFound(f"I don't know an incident `{escape(truncate(ref.strip(), 40))}`. Try `/incident list`.")
                return incident
            opened = await incident_store.open_incidents(session, limit=2)
            if len(opened) > 1:
                raise NotFound("Several incidents are open: say which, like `/incident postmortem #12`.")
            if opened:
                return opened[0]
            recent = await incident_store.latest_resolved(session, since=self.ctx.clock() - RECENT)
        if recent is None:
            raise NotFound("No incident is open or was resolved today: say which, like `/incident postmortem #12`.")
        return recent

    async def share(self, incident: Incident) -> Share:
        """`/incident postmortem`: share the draft unless it was (or is being) shared."""
        try:
            async with self.ctx.db.session() as session, session.begin():
                if await reminder_store.row_of(session, incident.id, ReminderKind.POSTMORTEM) is not None:
                    return Share(Shared.ALREADY, incident)
                row = posts.held_row(self.ctx, incident_id=incident.id, kind=ReminderKind.POSTMORTEM)
                session.add(row)
                await session.flush()
        except IntegrityError:  # another replica wrote it between the read and the write
            return Share(Shared.ALREADY, incident)
        return await self.deliver(row.id, posts.HELD)

    @staticmethod
    async def plan(ctx: AppContext, session, incident_id: int) -> int | None:
        """In a resolution's transaction: the row that shares the draft, unless the incident
        has one already (the command came first). Its ID, to `deliver` after the commit."""
        if await reminder_store.row_of(session, incident_id, ReminderKind.POSTMORTEM) is not None:
            return None
        row = posts.held_row(ctx, incident_id=incident_id, kind=ReminderKind.POSTMORTEM)
        session.add(row)
        await session.flush()
        return row.id

    async def deliver(self, row_id: int, claim: Claim) -> Share:
        """Share the draft under the row's claim (see the module's docstring)."""
        held = RowClaim(self.ctx, row_id, claim)
        async with self.ctx.db.session() as session:
            row = await session.get(Reminder, row_id)
            incident = await incident_store.get_incident(session, row.incident_id) if row is not None else None
            events = await incident_store.timeline(session, incident.id) if incident is not None else []
        if incident is None:
            await held.skip()
            raise NotFound("That incident is gone.")
        if incident.message_ts is None:  # the announcement's own recovery posts it; then this
            await held.release_until(self.ctx.clock() + RETRY_AFTER)
            return Share(Shared.WAITING, incident)
        at = Posted(incident.channel_id, incident.message_ts)
        channel = self.ctx.channel_in(at.channel)
        name = filename(incident.id)
        if held.stale:
            found = await channel.find_file(at, name)
            if found is not None:
                log.info("the postmortem of incident %s was already shared (%s); not sharing it again", incident.id, found)
                await held.record(found)
                return Share(Shared.ALREADY, incident)
        try:
            file_id = await channel.upload_file(name, postmortem(incident, events).encode())
            await channel.share_file(at, file_id, title(incident.id), guard=held.still_ours)
        except ClaimLost:
            log.warning("the postmortem of incident %s was taken over before its share; not sharing it", incident.id)
            return Share(Shared.ALREADY, incident)
        except (UploadFailed, SlackApiError) as exc:
            # Refused, so not shared: handed back, the scheduler tries again.
            reason = str(exc) if isinstance(exc, UploadFailed) else f"Slack refused it (`{slack_error(exc)}`)"
            log.warning("could not share the postmortem of incident %s: %s", incident.id, reason)
            await held.release_until(self.ctx.clock() + RETRY_AFTER)
            return Share(Shared.FAILED, incident, reason)
        except Exception:  # noqa: BLE001 - no answer in time: it may have been shared
            log.exception("sharing the postmortem of incident %s may have failed; the next try looks first", incident.id)
            await held.release(posted_maybe=True)  # stale at once: the next holder reads the thread first
            return Share(Shared.FAILED, incident, "Slack did not answer in time")
        await held.record(None)
        return Share(Shared.SHARED, incident)
