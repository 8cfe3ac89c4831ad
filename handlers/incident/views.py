"""The incident modals and answers to one person: pure functions from data to Block Kit.
Channel messages are in `bot.messages.incident`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.messages import blocks as kit
from bot.messages.digest import weekly_digest
from bot.messages.format import (
    context,
    duration,
    escape,
    fit,
    plain_text,
    section,
    slack_date,
    truncate,
)
from bot.messages.incident import IMPACT_EMOJI, short_title
from bot.services.incident_forms import TEXT_MAX, TITLE_MAX, DeclareForm
from bot.services.outcomes import Outcome
from bot.services.postmortem import Share, Shared
from bot.settings import Component
from handlers.incident.ids import NOTIFY_VALUE, Action, Block, Callback
from store.digest import WeekDigest
from store.models import Incident, IncidentEvent
from store.states import DraftKind

MAX_MESSAGE_BLOCKS = 50
MAX_SUGGESTIONS = 100  # options Slack shows from one block_suggestion answer


def _incident_label(incident: Incident) -> str:
    return truncate(f"#{incident.id} {incident.title}", 75)


def _incident_picker(chosen: Incident | None) -> dict:
    """Type-ahead over the open incidents (see `incident_options`), however many there are."""
    initial = (_incident_label(chosen), str(chosen.id)) if chosen is not None else None
    element = kit.external_select(Action.INCIDENT, initial, "Type its number or a word of its title")
    return kit.input_block(Block.INCIDENT, "Incident", element)


def picker_query(query: str) -> tuple[str | None, list[str]]:
    """What the person typed in the picker: `#12` is a number prefix, else words (as typed)."""
    text = query.strip()
    number = text[1:] if text.startswith("#") and text[1:].isdigit() else None
    return number, text.lstrip("#").split()


def incident_options(incidents: Sequence[Incident], query: str) -> list[dict]:
    """The options for what the person typed so far, at most the 100 Slack shows: `#12`
    finds incidents whose number starts with 12 (#12 itself first); other words find open
    incidents whose number, title or status-page ID holds every one of them. Newest first.
    The store already filtered (`store.incidents.search_open`); this keeps the rule whole
    for any list it is given."""
    number, words = picker_query(query)
    words = [word.lower() for word in words]

    def matches(incident: Incident) -> bool:
        if number is not None:
            return str(incident.id).startswith(number)
        haystack = f"{incident.id} {incident.title} {incident.upstream_id}".lower()
        return all(word in haystack for word in words)

    found = sorted((i for i in incidents if matches(i)), key=lambda i: str(i.id) != number)
    return [kit.option(_incident_label(i), str(i.id)) for i in found[:MAX_SUGGESTIONS]]


# --- modals -----------------------------------------------------------------------------


def _impact_label(impact: str) -> str:
    """Known impacts get their colour; configured ones (already ≤ 75 characters) stay bare."""
    return f"{IMPACT_EMOJI[impact]} {impact}" if impact in IMPACT_EMOJI else impact


def declare_modal(
    form: DeclareForm,
    components: Sequence[Component],
    *,
    statuses: Sequence[str],
    impacts: Sequence[str],
    channel_id: str | None,
    declarer: str | None = None,
) -> dict:
    """`declarer`: who opens it, the lead unless they pick someone else."""
    blocks = []
    if form.from_message:
        where = f"<#{escape(form.source_channel)}>"
        blocks.append({**context(f"From a message in {where}; the announcement will link to it."), "block_id": Block.SOURCE})
    blocks += [
        kit.input_block(
            Block.TITLE,
            "Title",
            kit.text_input(
                Action.TITLE, initial=kit.typed(form.title), max_length=TITLE_MAX, placeholder="Checkout is failing for EU users"
            ),
        ),
        kit.input_block(
            Block.DESCRIPTION,
            "Description",
            kit.text_input(
                Action.DESCRIPTION,
                initial=form.description,
                multiline=True,
                max_length=TEXT_MAX,
                placeholder="What customers see, and what we know so far",
            ),
            optional=True,
        ),
        kit.input_block(Block.STATUS, "Status", kit.select(Action.STATUS, [(s, s) for s in statuses], form.status, "Status")),
        kit.input_block(
            Block.IMPACT,
            "Impact",
            kit.select(Action.IMPACT, [(_impact_label(i), i) for i in impacts], form.impact, "Impact"),
        ),
        kit.input_block(Block.LEAD, "Lead", kit.person_select(Action.LEAD, form.lead or declarer, "Who runs it")),
    ]
    if components:
        element = kit.multi_select(
            Action.COMPONENTS,
            [(c.name, c.id) for c in components],
            form.component_ids,
            "Pick components",
            group_label="Components",
        )
        blocks.append(kit.input_block(Block.COMPONENTS, "Affected components", element, optional=True))
    notify_option = kit.option("Notify subscribers", NOTIFY_VALUE)
    checkboxes: dict = {"type": "checkboxes", "action_id": Action.NOTIFY, "options": [notify_option]}
    if form.notify:
        checkboxes["initial_options"] = [notify_option]
    blocks.append(kit.input_block(Block.NOTIFY, "Subscribers", checkboxes, optional=True))
    metadata: dict = {"channel": channel_id}
    if form.from_message:
        metadata["source"] = [form.source_channel, form.source_ts]
    return kit.modal(Callback.DECLARE, "Declare an incident", "Declare", blocks, metadata)


def lead_modal(incident: Incident, *, channel_id: str | None) -> dict:
    """*Lead* on the announcement: who runs the incident from now on."""
    blocks = [
        section(f"Who leads incident *#{incident.id} {short_title(incident)}*? The thread hears of the change."),
        kit.input_block(Block.LEAD, "Lead", kit.person_select(Action.LEAD, incident.lead, "Who runs it")),
    ]
    return kit.modal(Callback.LEAD, "Incident lead", "Set lead", blocks, {"channel": channel_id, "incident": incident.id})


def lead_answer(incident: Incident, permalink: str | None, warning: str | None) -> tuple[str, list[dict]]:
    """To whoever changed the lead."""
    where = f" <{permalink}|Open the thread>." if permalink else ""
    text = f":white_check_mark: <@{incident.lead}> now leads incident #{incident.id} *{short_title(incident)}*.{where}"
    blocks = [section(text)]
    if warning:
        blocks.append(section(f":warning: {warning}"))
    return text, blocks


def postmortem_answer(share: Share, permalink: str | None) -> tuple[str, list[dict]]:
    """To whoever ran `/incident postmortem`: shared, shared before, or why not yet."""
    incident = share.incident
    name = f"incident #{incident.id} *{short_title(incident)}*"
    thread = f"<{permalink}|its thread>" if permalink else "its thread"
    if share.how == Shared.SHARED:
        text = f":white_check_mark: The postmortem draft of {name} is in {thread}."
    elif share.how == Shared.ALREADY:
        text = f"The postmortem draft of {name} was shared in {thread} already; sitrep shares it once."
    elif share.how == Shared.WAITING:
        text = f"The postmortem draft of {name} is shared in its thread as soon as its announcement is posted."
    else:
        text = (
            f":warning: The postmortem draft of {name} could not be shared in {thread}: {share.reason}. "
            "Nothing is lost: sitrep tries again in a minute and shares it there."
        )
    if share.canvas is not None:
        text += " " + _canvas_line(share.canvas, f"<#{incident.room_channel_id}>", resolved=incident.resolved_at is not None)
    return text, [section(text)]


def _canvas_line(canvas: Share, room: str, *, resolved: bool) -> str:
    """The room's canvas, after the file's line: made, made before (resolving replaces its
    text with the final version), following, or why not."""
    if canvas.how == Shared.SHARED:
        return f"It is {room}'s canvas too."
    if canvas.how == Shared.ALREADY and resolved:
        return f"It is {room}'s canvas already, as resolved."
    if canvas.how == Shared.ALREADY:
        return f"It is {room}'s canvas already; resolving the incident replaces it with the final version."
    if canvas.how == Shared.WAITING:
        return f"It becomes {room}'s canvas shortly."
    if canvas.how == Shared.SKIPPED:
        return f"It is not {room}'s canvas: {canvas.reason}."
    return f"It could not be made {room}'s canvas yet ({canvas.reason}); sitrep tries again in a minute."


def declare_from_message(text: str, channel_id: str, message_ts: str) -> DeclareForm:
    """The declare form for the *Declare incident* shortcut: the message's words as the
    description, as plain text (Slack's `<@U1>`, `&amp;` undone; shown escaped wherever it
    is shown again), cut visibly to the field's length; its title is the person's to write."""
    return DeclareForm(
        title="",
        description=truncate(plain_text(text), TEXT_MAX).strip(),
        source_channel=channel_id,
        source_ts=message_ts,
    )


def source_of(metadata: dict) -> dict[str, str]:
    """The message a declare form was opened from, from its private_metadata ({} when none)."""
    source = metadata.get("source")
    if isinstance(source, list) and len(source) == 2 and all(isinstance(part, str) and part for part in source):
        return {"source_channel": source[0], "source_ts": source[1]}
    return {}


def update_modal(
    chosen: Incident | None, *, status: str | None, statuses: Sequence[str], text: str = "", channel_id: str | None
) -> dict:
    """`chosen`: the incident to preselect (named in the command, or the only one open)."""
    blocks = [
        _incident_picker(chosen),
        kit.input_block(
            Block.STATUS,
            "New status",
            kit.select(Action.STATUS, [(s, s) for s in statuses], status or (chosen.status if chosen else None), "Status"),
        ),
        kit.input_block(
            Block.UPDATE_TEXT,
            "Update",
            kit.text_input(
                Action.UPDATE_TEXT,
                initial=text,
                multiline=True,
                max_length=TEXT_MAX,
                placeholder="What changed since the last update",
            ),
        ),
    ]
    return kit.modal(Callback.UPDATE, "Post an update", "Post update", blocks, {"channel": channel_id})


def resolve_modal(chosen: Incident | None, *, note: str = "", channel_id: str | None) -> dict:
    question = (
        f"Resolve *#{chosen.id} {short_title(chosen)}*? The status page will show it as resolved."
        if chosen
        else "Resolve an incident? The status page will show it as resolved."
    )
    blocks = [
        section(question),
        _incident_picker(chosen),
        kit.input_block(
            Block.NOTE,
            "Closing note",
            kit.text_input(
                Action.NOTE, initial=note, multiline=True, max_length=TEXT_MAX, placeholder="What fixed it (optional)"
            ),
            optional=True,
        ),
    ]
    return kit.modal(Callback.RESOLVE, "Resolve incident", "Resolve", blocks, {"channel": channel_id})


# --- answers to one person --------------------------------------------------------------


def declared_answer(incident: Incident, permalink: str | None) -> tuple[str, list[dict]]:
    where = f"<{permalink}|the announcement>" if permalink else f"<#{incident.channel_id}>"
    text = f":white_check_mark: Incident #{incident.id} *{short_title(incident)}* is declared. Follow and update it in {where}."
    return text, [section(text)]


def done_answer(outcome: Outcome) -> tuple[str, list[dict]]:
    """What the person is told after a declare, an update or a resolve went through."""
    incident = outcome.record
    if outcome.kind == DraftKind.DECLARE:
        text, blocks = declared_answer(incident, outcome.permalink)
    else:
        verb = "Posted an update to" if outcome.kind == DraftKind.UPDATE else "Resolved"
        where = f" <{outcome.permalink}|Open the thread>." if outcome.permalink else ""
        text = f":white_check_mark: {verb} incident #{incident.id} *{short_title(incident)}*.{where}"
        blocks = [section(text)]
    if outcome.warning:
        blocks.append(section(f":warning: {outcome.warning}"))
    return text, blocks


LIST_PAGE = 20  # open incidents one `/incident list` answer shows


def incident_list(
    incidents: Sequence[Incident], now: datetime, permalinks: dict[int, str], *, total: int, page: int = 1
) -> tuple[str, list[dict]]:
    """One page of the open incidents (newest first, `LIST_PAGE` a page) out of `total`,
    and how many more there are with the command that shows them: never every one."""
    if total == 0:
        text = ":sunny: No open incidents. Declare one with `/incident declare`."
        return text, [section(text)]
    pages = -(-total // LIST_PAGE)
    plural = "s" if total != 1 else ""
    if not incidents:
        text = (
            f"There are {total} open incident{plural}, on page{'s 1–' if pages > 1 else ' '}{pages}; page {page} is past the end."
        )
        return text, [section(text)]
    first = (page - 1) * LIST_PAGE + 1
    last = first + len(incidents) - 1
    lines = []
    for incident in incidents:
        link = permalinks.get(incident.id)
        title = fit(incident.title, 80)
        title = f"<{link}|{title}>" if link else title
        lines.append(
            f"{IMPACT_EMOJI.get(incident.impact, '')} *#{incident.id}* {title} · {incident.status} · "
            f"{incident.impact} · led by <@{incident.lead}> · open {duration(now - incident.declared_at)}"
        )
    shown = f" — newest first, {first}–{last} shown" if total > len(incidents) else ""
    header = f"*{total} open incident{plural}*{shown}"
    blocks = [section(header)]
    chunk: list[str] = []
    for line in lines:
        if chunk and (len("\n".join(chunk + [line])) > 2900):
            blocks.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(section("\n".join(chunk)))
    more = total - last
    if more > 0:
        blocks.append(
            context(
                f"…and {more} more: `/incident list {page + 1}` shows the next {min(more, LIST_PAGE)}; "
                "`/incident update` finds any one by number or a word of its title."
            )
        )
    return f"{total} open incident{plural}", blocks


#: Blocks a private answer holds, and characters a section's text holds (Slack's limits).
MAX_SECTION_TEXT = 3000
EVENT_ICONS = {
    "declared": ":rotating_light:",
    "update": ":memo:",
    "lead": ":busts_in_silhouette:",
    "pinned": ":pushpin:",
    "overlap": ":construction:",
    "resolved": ":white_check_mark:",
}


def timeline_line(event: IncidentEvent) -> str:
    """One event as one line: when, what, who, and its words (a pinned message linked)."""
    icon = EVENT_ICONS.get(event.kind, "•")
    who = f"<@{event.user_id}>" if event.user_id else "someone"
    if event.kind == "lead":
        what = f"lead → <@{event.text}> (set by {who})"
    elif event.kind == "pinned":
        words = fit(plain_text(event.text), 300) or "(no text)"
        linked = f"<{escape(event.link)}|pinned>" if event.link else "pinned"
        what = f"{linked} from {who}: {words}"
    elif event.kind == "overlap":
        words = fit(event.text, 300)
        what = "maintenance overlapping the start: " + (f"<{escape(event.link)}|{words}>" if event.link else words)
    elif event.kind == "declared":
        what = f"declared by {who} · {fit(event.status, 100)}"
    elif event.kind == "resolved":
        what = f"resolved by {who}" + (f": {fit(event.text, 300)}" if event.text else "")
    else:
        what = f"*{fit(event.status, 100)}* from {who}: {fit(event.text, 300)}"
    return f"{icon} {slack_date(event.at)} {what}"


def timeline_answer(incident: Incident, events: Sequence[IncidentEvent]) -> tuple[str, list[dict]]:
    """`/incident timeline`: every event, oldest first, in as many sections as Slack takes;
    past that, "…and N more" (the newest are the ones left out: the start tells the story)."""
    head = f"*Timeline of incident #{incident.id} {short_title(incident)}* — {len(events)} events"
    chunks: list[list[str]] = []
    for line in map(timeline_line, events):
        if chunks and len("\n".join([*chunks[-1], line])) <= MAX_SECTION_TEXT - 100:
            chunks[-1].append(line)
        else:
            chunks.append([line])
    kept = chunks[: MAX_MESSAGE_BLOCKS - 2]  # beside the header and the "…and N more" line
    blocks = [section(head), *(section("\n".join(chunk)) for chunk in kept)]
    more = len(events) - sum(len(chunk) for chunk in kept)
    if more:
        blocks.append(context(f"…and {more} more, the newest."))
    return f"Timeline of incident #{incident.id}: {len(events)} events", blocks


HELP = (
    "*`/incident`* — run incidents from Slack\n"
    "• `/incident declare [title]` — declare an incident (also plain `/incident`)\n"
    "• `/incident update [ref]` — post an update and change the status\n"
    "• `/incident resolve [ref]` — resolve an incident, with an optional closing note\n"
    "• `/incident lead [ref] @person` — hand the incident to a new lead (also the *Lead* button)\n"
    "• `/incident timeline [ref]` — what happened when (react :pushpin: to a message in its thread or channel to add it), only to you\n"
    "• `/incident postmortem [ref]` — share the postmortem draft (Markdown) in its thread and as its channel's canvas; resolving shares the final version\n"
    "• `/incident list [page]` — open incidents, newest first, 20 a page, only to you\n"
    "• `/incident digest` — this week so far: incidents, time to resolve, maintenance, only to you\n"
    "• `/incident help` — this help\n"
    "`ref` is the number the bot shows (`12` or `#12`) or the status page's incident ID.\n"
    "• *Declare incident* in a message's *⋯* menu — declare from that message (its text is the description)\n"
    "• sitrep's *Home* tab — what is open and coming, with buttons to declare, update, resolve and schedule\n"
    "If the status page takes a declare but never answers, you are told *Outcome unknown*: "
    "*It exists: link it* (paste its ID from the status page) or *Create anyway*."
)


def help_answer(prefix: str | None = None) -> tuple[str, list[dict]]:
    text = f"{prefix}\n\n{HELP}" if prefix else HELP
    return text, [section(text)]


def digest_answer(digest: WeekDigest) -> tuple[str, list[dict]]:
    """`/incident digest`: the week so far, as the weekly post shows it, only to the person."""
    return weekly_digest(digest, so_far=True)
