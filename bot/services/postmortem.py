"""The postmortem draft shared in the incident's thread as a Markdown file and, when the
incident has its own channel, as that channel's canvas, each exactly once.

Each share is owned by a `Reminder` row, unique per incident and kind, written claimed
(`posts.held_row`) in the transaction that calls for it; the rows say *what* is shared, the
claim and its fencing are the engine's (`bot.slack.posts.RowClaim`):

- `postmortem`: the draft as a file in the thread; `canvas`: the draft as the room's canvas.
  Written by the resolution, or by `/incident postmortem` when missing (whichever comes
  first); later ones find the rows and say where the draft is.
- `postmortem_final` and `canvas_final`: written by the resolution when the first share came
  before it, as the resolve's figures (time to resolve) only exist then: the final version is
  shared as a second file (`incident-N-postmortem-final.md`) and replaces the canvas's text.

A process that dies first leaves the row claimed: the recovery makes the claim stale and the
scheduler delivers it (`scheduler.reminders.DELIVERY`). The text is built when the share goes
out, from the store as it is then, with people's display names (`users.info`, cached; the ID
when Slack will not say): Markdown cannot render `<@U…>` mentions.

The file, and why it is not a tagged reply through `posts.post_once`: sharing a file is
three calls, and only the last one (files.completeUploadExternal into the thread) is seen by
anyone. So the claim guards that one call, as the engine guards a post:

1. a stale claim (its process gone) first reads the thread for a message of the bot's that
   shares a file with this share's file name: found, the share is recorded and nothing is
   shared again. File messages carry no metadata, but they do carry the file's name, which
   is unique per incident and version, so the name is the tag;
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
own name does not.

The canvas: a channel holds one channel canvas, so the channel itself is the tag.

1. a stale claim first looks (conversations.info shows the channel's canvas): found, it is
   recorded (its ID in the row's `message_ts`) and nothing is created;
2. the create is fenced like the file's share; `channel_canvas_already_exists` on a stale
   claim (the look could not read the channel) is the same "already done" signal. On a fresh
   claim it means a person gave the channel a canvas first: theirs is left alone (skipped);
3. the final version replaces the text of the canvas the first share recorded
   (canvases.edit, `replace`): the same edit twice leaves the same canvas, so a stale claim
   needs no look. A first share still under way is waited for; one skipped skips it too.

A refusal no retry can help (the token without `canvases:write`, a plan without channel
canvases, the channel archived) skips the canvas: logged once with what to do, and told to
the person who asked; the file in the thread goes out regardless. Anything else is tried
again like the file."""

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
from bot.messages.postmortem import people, postmortem
from bot.messages.sandbox import SANDBOX_PREFIX
from bot.slack import posts
from bot.slack.canvases import ALREADY_EXISTS, CANVAS_SCOPE, PERMANENT, Canvases
from bot.slack.channel import Posted, UploadFailed
from bot.slack.posts import RowClaim
from store import incidents as incident_store
from store import reminders as reminder_store
from store.models import Incident, Reminder
from store.reminders import Claim
from store.states import ReminderKind, ReminderState

log = logging.getLogger(__name__)

#: A share that failed before reaching anyone is tried again this long after.
RETRY_AFTER = timedelta(minutes=1)
#: `/incident postmortem` without a reference takes an incident resolved this recently.
RECENT = timedelta(days=1)
#: The rows that share a file in the thread, and those that write the room's canvas; each
#: pair is (the first share, the final one written by the resolution after it).
FILE = (ReminderKind.POSTMORTEM, ReminderKind.POSTMORTEM_FINAL)
CANVAS = (ReminderKind.CANVAS, ReminderKind.CANVAS_FINAL)
FINAL = (ReminderKind.POSTMORTEM_FINAL, ReminderKind.CANVAS_FINAL)
#: The row states that end a share (nothing more will happen to it).
DONE = (ReminderState.POSTED, ReminderState.SKIPPED)


def filename(incident_id: int, *, final: bool = False) -> str:
    """The file's name: unique per incident and version, it is how a taken-over claim finds the share."""
    return f"incident-{incident_id}-postmortem{'-final' if final else ''}.md"


def title(incident_id: int, *, final: bool = False) -> str:
    return f"Postmortem draft for #{incident_id}{', as resolved' if final else ''}"


class Shared(StrEnum):
    """How a share ended, for the person who asked."""

    SHARED = "shared"
    ALREADY = "already"
    """Shared before (or being shared by another process): not shared again."""
    FAILED = "failed"
    """Not shared now: handed back, the scheduler tries again."""
    WAITING = "waiting"
    """What it depends on is not there yet (the announcement, the first canvas): it follows."""
    SKIPPED = "skipped"
    """Not shared, and no retry would help (`reason` says why and what to do): the canvas only."""


@dataclass(frozen=True)
class Share:
    """How one share ended: the file in the thread, with the room's canvas in `canvas`."""

    how: Shared
    incident: Incident
    reason: str | None = None
    canvas: Share | None = None


#: Why a canvas was skipped for want of its scope, and what to do (the person and the log).
MISSING_SCOPE = f"the sitrep app lacks the `{CANVAS_SCOPE}` scope: add it (reinstall the app from `manifest.channels.yml`)"


def resolve_warning(share: Share) -> str | None:
    """What the resolver hears of one share the resolution made, when it did not go out."""
    if share.how == Shared.FAILED:
        return f"The postmortem draft could not be shared ({share.reason}); sitrep tries again in a minute."
    if share.how == Shared.SKIPPED and share.reason:
        return f"The postmortem draft is in the thread but not its channel's canvas: {share.reason}."
    return None


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
        """`/incident postmortem`: share the draft (and make it the room's canvas) unless that
        was (or is being) done. A canvas there already is said so, never made twice: the
        resolution replaces its text with the final version."""
        kinds = [FILE[0]] + ([CANVAS[0]] if incident.room_channel_id else [])
        planned: dict[str, int] = {}
        try:
            async with self.ctx.db.session() as session, session.begin():
                for kind in kinds:
                    if await reminder_store.row_of(session, incident.id, kind) is None:
                        row = posts.held_row(self.ctx, incident_id=incident.id, kind=kind)
                        session.add(row)
                        await session.flush()
                        planned[kind] = row.id
        except IntegrityError:  # another replica wrote them between the read and the write
            planned = {}
        shares = {
            kind: await self.deliver(planned[kind], posts.HELD) if kind in planned else await self._already(incident, kind)
            for kind in kinds
        }
        file = shares[FILE[0]]
        return Share(file.how, file.incident, file.reason, canvas=shares.get(CANVAS[0]))

    async def _already(self, incident: Incident, kind: ReminderKind) -> Share:
        """A share asked for again: where it stands (a canvas skipped says why again)."""
        async with self.ctx.db.session() as session:
            row = await reminder_store.row_of(session, incident.id, kind)
        if kind in CANVAS and row is not None and row.state == ReminderState.SKIPPED:
            return Share(Shared.SKIPPED, incident, "it was skipped before")
        return Share(Shared.ALREADY, incident)

    @staticmethod
    async def plan(ctx: AppContext, session, incident: Incident) -> list[int]:
        """In a resolution's transaction: the rows that share the postmortem as resolved. A
        share not made yet (no command came first) is written as the first; one made already
        gets its final version. Their IDs, to `deliver` after the commit."""
        pairs = [FILE] + ([CANVAS] if incident.room_channel_id else [])
        rows = []
        for first, final in pairs:
            kind = first if await reminder_store.row_of(session, incident.id, first) is None else final
            if await reminder_store.row_of(session, incident.id, kind) is None:
                rows.append(posts.held_row(ctx, incident_id=incident.id, kind=kind))
        session.add_all(rows)
        await session.flush()
        return [row.id for row in rows]

    async def deliver(self, row_id: int, claim: Claim) -> Share:
        """Make the share the row owns, under its claim (see the module's docstring)."""
        held = RowClaim(self.ctx, row_id, claim)
        async with self.ctx.db.session() as session:
            row = await session.get(Reminder, row_id)
            incident = await incident_store.get_incident(session, row.incident_id) if row is not None else None
            events = await incident_store.timeline(session, incident.id) if incident is not None else []
            first = None
            if row is not None and row.kind == ReminderKind.CANVAS_FINAL:
                first = await reminder_store.row_of(session, row.incident_id, ReminderKind.CANVAS)
        if incident is None:
            await held.skip()
            raise NotFound("That incident is gone.")
        names = await self.ctx.names.of(people(incident, events))
        markdown = postmortem(incident, events, names=names)
        final = row.kind in FINAL
        if row.kind in CANVAS:
            return await self._canvas(held, incident, markdown, first, final=final)
        return await self._file(held, incident, markdown, final=final)

    async def _file(self, held: RowClaim, incident: Incident, markdown: str, *, final: bool) -> Share:
        if incident.message_ts is None:  # the announcement's own recovery posts it; then this
            await held.release_until(self.ctx.clock() + RETRY_AFTER)
            return Share(Shared.WAITING, incident)
        at = Posted(incident.channel_id, incident.message_ts)
        channel = self.ctx.channel_in(at.channel)
        name = filename(incident.id, final=final)
        if held.stale:
            found = await channel.find_file(at, name)
            if found is not None:
                log.info("the postmortem %s was already shared (%s); not sharing it again", name, found)
                await held.record(found)
                return Share(Shared.ALREADY, incident)
        try:
            file_id = await channel.upload_file(name, markdown.encode())
            await channel.share_file(at, file_id, title(incident.id, final=final), guard=held.still_ours)
        except ClaimLost:
            log.warning("the postmortem %s was taken over before its share; not sharing it", name)
            return Share(Shared.ALREADY, incident)
        except (UploadFailed, SlackApiError) as exc:
            # Refused, so not shared: handed back, the scheduler tries again.
            reason = str(exc) if isinstance(exc, UploadFailed) else f"Slack refused it (`{slack_error(exc)}`)"
            log.warning("could not share the postmortem of incident %s: %s", incident.id, reason)
            await held.release_until(self.ctx.clock() + RETRY_AFTER)
            return Share(Shared.FAILED, incident, reason)
        except Exception:  # noqa: BLE001 - no answer in time: it may have been shared
            log.warning(
                "sharing the postmortem of incident %s may have failed (no answer); the next try looks first", incident.id
            )
            await held.release(posted_maybe=True)  # stale at once: the next holder reads the thread first
            return Share(Shared.FAILED, incident, "Slack did not answer in time")
        await held.record(None)
        return Share(Shared.SHARED, incident)

    async def _canvas(self, held: RowClaim, incident: Incident, markdown: str, first: Reminder | None, *, final: bool) -> Share:
        room = incident.room_channel_id
        canvases = Canvases(self.ctx.sender, self.ctx.outbox)
        if room is None:
            await held.skip()
            return Share(Shared.SKIPPED, incident, "it has no channel of its own")
        if final and (first is None or first.state not in DONE):  # the first create may be under way
            await held.release_until(self.ctx.clock() + RETRY_AFTER)
            return Share(Shared.WAITING, incident)
        if final and first.state == ReminderState.SKIPPED:  # said when it was skipped: not again
            log.info("incident %s has no canvas of sitrep's to replace", incident.id)
            await held.skip()
            return Share(Shared.SKIPPED, incident)
        try:
            if final:
                canvas_id = first.message_ts or await self._look(canvases, room)
                if canvas_id is None:
                    await held.skip()
                    return Share(Shared.SKIPPED, incident, "its channel's canvas could not be found")
                await canvases.replace(canvas_id, markdown, guard=held.still_ours)
                await held.record(canvas_id)
                return Share(Shared.SHARED, incident)
            if held.stale:
                found = await self._look(canvases, room)
                if found is not None:
                    log.info("the canvas of incident %s's channel was already made (%s); not making it again", incident.id, found)
                    await held.record(found)
                    return Share(Shared.ALREADY, incident)
            named = (SANDBOX_PREFIX if self.ctx.settings.sitrep_sandbox else "") + title(incident.id)
            canvas_id = await canvases.create(room, named, markdown, guard=held.still_ours)
        except ClaimLost:
            log.warning("the canvas of incident %s was taken over before it was written; leaving it", incident.id)
            return Share(Shared.ALREADY, incident)
        except SlackApiError as exc:
            return await self._refused(held, incident, slack_error(exc), canvases)
        except Exception:  # noqa: BLE001 - no answer in time: it may have been made
            log.warning("the canvas of incident %s may not have been written (no answer); the next try looks first", incident.id)
            await held.release(posted_maybe=True)
            return Share(Shared.FAILED, incident, "Slack did not answer in time")
        await held.record(canvas_id)
        return Share(Shared.SHARED, incident)

    async def _look(self, canvases: Canvases, room: str) -> str | None:
        """The room's canvas, if it has one; None also when Slack will not say (the create's
        `channel_canvas_already_exists` then tells)."""
        try:
            return await canvases.find(room)
        except SlackApiError as exc:
            log.info("could not read %s for its canvas (%s); the create will tell", room, slack_error(exc))
            return None

    async def _refused(self, held: RowClaim, incident: Incident, error: str, canvases: Canvases) -> Share:
        if error == ALREADY_EXISTS and held.stale:  # made by the process that died: done
            log.info("the canvas of incident %s's channel was already made; not making it again", incident.id)
            await held.record(await self._look(canvases, incident.room_channel_id))
            return Share(Shared.ALREADY, incident)
        if error == ALREADY_EXISTS:
            reason = "its channel has a canvas of its own already, which sitrep leaves alone"
        elif error == "missing_scope":
            reason = MISSING_SCOPE
        elif error in PERMANENT:
            reason = f"Slack refused it (`{error}`)"
        else:
            log.warning("could not write the canvas of incident %s (%s); trying again later", incident.id, error)
            await held.release_until(self.ctx.clock() + RETRY_AFTER)
            return Share(Shared.FAILED, incident, f"Slack refused it (`{error}`)")
        log.warning("the postmortem of incident %s is not its channel's canvas: %s", incident.id, reason)
        await held.skip()
        return Share(Shared.SKIPPED, incident, reason)
