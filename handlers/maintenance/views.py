"""The maintenance modals and answers to one person: pure functions from data to Block Kit.
Channel messages are in `bot.messages.maintenance`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from bot.backends import backend_named
from bot.messages import blocks as kit
from bot.messages.format import button as kit_button
from bot.messages.format import (
    context,
    duration,
    fit,
    fit_list,
    plain,
    section,
    slack_date,
)
from bot.messages.maintenance import OverrunId, state_label, title_of, when
from bot.services.maintenance_forms import SERVERS_MAX, TEXT_MAX, TITLE_MAX, ScheduleForm
from bot.services.outcomes import Outcome
from bot.services.recurrence import MAX_OCCURRENCES, Repeat
from bot.settings import Component
from handlers.maintenance.ids import Action, Block, Callback, Scope
from store.models import MaintenanceWindow
from store.states import DraftKind

if TYPE_CHECKING:
    from bot.backends.base import BackendWindow, MaintenanceBackend
    from bot.services.maintenance_listing import ListedWindow, Listing

MAX_MESSAGE_BLOCKS = 50
FIELD_MAX = 1900  # a section field may hold 2000 characters


class FormShape(Protocol):
    """The parts of a maintenance backend that shape the form (see MaintenanceBackend)."""

    title_label: str
    has_description: bool
    uses_servers: bool


def _backend(window: ListedWindow | MaintenanceWindow) -> type[MaintenanceBackend]:
    return backend_named(window.backend)


# --- modals -----------------------------------------------------------------------------


#: The edit form's metadata key listing fields whose stored value is too long for any text
#: field: they are shown read-only, and left empty they keep the stored value.
KEEP_KEY = "keep"


def _text_field(
    block_id: str,
    action_id: str,
    label: str,
    value: str,
    *,
    max_length: int,
    placeholder: str,
    editing: bool,
    multiline: bool = False,
    optional: bool = False,
    hint: str | None = None,
) -> tuple[list[dict], bool]:
    """(blocks, kept): a text field prefilled with `value` whole — the field grows to hold it.
    A stored value longer than any field is never prefilled cut, as it would be saved back
    cut: it is quoted above an empty field, and `kept` says an empty field keeps it."""
    if kit.fits_input(value) or not editing:
        element = kit.text_input(
            action_id, initial=kit.typed(value), multiline=multiline, max_length=max_length, placeholder=placeholder
        )
        return [kit.input_block(block_id, label, element, optional=optional, hint=hint)], False
    shown = section(f"*{label}* now ({len(value):,} characters, more than a form field holds):\n>{fit(value, 2500)}")
    element = kit.text_input(action_id, multiline=multiline, max_length=max_length, placeholder="Leave empty to keep it as it is")
    field = kit.input_block(block_id, f"New {label.lower()}", element, optional=True, hint="Leave empty to keep it as it is.")
    return [shown, field], True


def schedule_modal(
    form: ScheduleForm,
    shape: FormShape,
    components: Sequence[Component],
    *,
    channel_id: str | None,
    window: MaintenanceWindow | None = None,
) -> dict:
    """The schedule form; with `window`, the same form prefilled to edit it."""
    label = shape.title_label
    editing = window is not None
    blocks: list[dict] = []
    kept: list[str] = []

    def add(name: str, field: tuple[list[dict], bool]) -> None:
        blocks.extend(field[0])
        if field[1]:
            kept.append(name)

    if window is not None:
        blocks.append(section(f"Editing maintenance *#{window.id} {title_of(window)}*."))
    placeholder = "Database upgrade" if label == "Title" else "Kernel updates on the web servers"
    add(
        "title",
        _text_field(Block.TITLE, Action.TITLE, label, form.title, max_length=TITLE_MAX, placeholder=placeholder, editing=editing),
    )
    if shape.has_description:
        add(
            "description",
            _text_field(
                Block.DESCRIPTION,
                Action.DESCRIPTION,
                "Description",
                form.description,
                max_length=TEXT_MAX,
                placeholder="What customers will notice, and what they should do",
                editing=editing,
                multiline=True,
                optional=True,
            ),
        )
    blocks.append(kit.input_block(Block.START, "Start", kit.date_time(Action.START, form.start), hint="In your own time zone."))
    blocks.append(kit.input_block(Block.END, "End", kit.date_time(Action.END, form.end), hint="In your own time zone."))
    if shape.uses_servers:
        add(
            "servers",
            _text_field(
                Block.SERVERS,
                Action.SERVERS,
                "Servers",
                form.servers_text,
                max_length=SERVERS_MAX,
                placeholder="1, 2, 3",
                editing=editing,
                hint="Numeric server IDs, separated by commas.",
            ),
        )
    elif components:
        element = kit.multi_select(
            Action.COMPONENTS,
            [(c.name, c.id) for c in components],
            form.component_ids,
            "Pick components",
            group_label="Components",
        )
        blocks.append(kit.input_block(Block.COMPONENTS, "Affected components", element, optional=True))
    if window is None:
        blocks.extend(repeat_fields(form))
    elif window.series_id is not None:
        blocks.append(series_scope(following=form.following))
    metadata: dict[str, Any] = {"channel": channel_id}
    if window is not None:
        metadata["window"] = window.id
        if kept:
            metadata[KEEP_KEY] = kept
        return kit.modal(Callback.EDIT, "Edit maintenance", "Save changes", blocks, metadata)
    return kit.modal(Callback.SCHEDULE, "Schedule maintenance", "Schedule", blocks, metadata)


REPEAT_CHOICES = (
    ("Does not repeat", Repeat.NONE),
    ("Every day", Repeat.DAILY),
    ("Every week", Repeat.WEEKLY),
    ("Every two weeks", Repeat.BIWEEKLY),
    ("Every month, on the same weekday (the 1st Sunday…)", Repeat.MONTHLY_WEEKDAY),
    ("Every month, on the same day", Repeat.MONTHLY_DAY),
)
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def repeat_fields(form: ScheduleForm) -> list[dict]:
    """A new window may repeat: how, on which weekdays, until when or how many times, and the
    time zone whose wall clock the series keeps."""
    weekdays = {
        "type": "checkboxes",
        "action_id": Action.WEEKDAYS,
        "options": [kit.option(name, str(i)) for i, name in enumerate(WEEKDAY_NAMES)],
    }
    chosen = [kit.option(WEEKDAY_NAMES[d], str(d)) for d in sorted(set(form.weekdays))]
    if chosen:
        weekdays["initial_options"] = chosen
    until: dict[str, Any] = {"type": "datepicker", "action_id": Action.UNTIL, "placeholder": plain("Last day")}
    if form.until is not None:
        until["initial_date"] = form.until.isoformat()
    return [
        kit.input_block(
            Block.REPEAT,
            "Repeat",
            kit.select(
                Action.REPEAT, [(label, str(value)) for label, value in REPEAT_CHOICES], str(form.repeat), "Does not repeat"
            ),
            optional=True,
            hint="Each repeat is created ahead of time as its own window, with its announcement and reminders.",
        ),
        kit.input_block(
            Block.WEEKDAYS, "On these days (weekly)", weekdays, optional=True, hint="None ticked: the start's weekday."
        ),
        kit.input_block(Block.UNTIL, "Repeat until", until, optional=True, hint="The last day a window may start on."),
        kit.input_block(
            Block.TIMES,
            "…or this many times",
            kit.text_input(Action.TIMES, initial=form.times_text, max_length=6, placeholder=f"2 to {MAX_OCCURRENCES}"),
            optional=True,
        ),
        kit.input_block(
            Block.ZONE,
            "Time zone",
            kit.text_input(Action.ZONE, initial=form.zone, max_length=64, placeholder="Europe/Berlin"),
            optional=True,
            hint="The series keeps its local time in this zone across daylight-saving changes. Empty: yours in Slack.",
        ),
    ]


def series_scope(*, following: bool = False, hint: str | None = None) -> dict:
    """For one window of a series: only it, or it and all that follow."""
    scope = {
        "type": "radio_buttons",
        "action_id": Action.SCOPE,
        "options": [kit.option("Only this one", Scope.THIS), kit.option("This one and all that follow", Scope.FOLLOWING)],
    }
    scope["initial_option"] = scope["options"][1 if following else 0]
    return kit.input_block(Block.SCOPE, "This window repeats", scope, hint=hint)


def cancel_modal(window: MaintenanceWindow, *, note: str = "", channel_id: str | None) -> dict:
    question = (
        f"Cancel maintenance *#{window.id} {title_of(window)}* ({when(window.start, window.end)})?\n"
        f"{_backend(window).cancel_effect} The announcement will show it as cancelled."
    )
    blocks = [section(question)]
    if window.series_id is not None:
        blocks.append(series_scope(hint="All that follow: the series stops, and its windows ahead are cancelled."))
    blocks += [
        kit.input_block(
            Block.NOTE,
            "Note for the thread",
            kit.text_input(Action.NOTE, initial=note, multiline=True, max_length=TEXT_MAX, placeholder="Why (optional)"),
            optional=True,
        ),
    ]
    return kit.modal(Callback.CANCEL, "Cancel maintenance", "Cancel window", blocks, {"channel": channel_id, "window": window.id})


# --- answers to one person --------------------------------------------------------------


def shifted_note(window: MaintenanceWindow, entered: tuple[datetime, datetime]) -> str:
    label = _backend(window).display_name
    return (
        f":warning: {label} stored the window as {when(window.start, window.end)}, "
        f"not {when(*entered)} as you entered. The announcement and reminders follow {label}."
    )


def done_answer(done: Outcome) -> tuple[str, list[dict]]:
    """What the person is told after a schedule, an edit or a cancel went through."""
    window = done.record
    where = f" <{done.permalink}|Open the announcement>." if done.permalink else ""
    if done.kind == DraftKind.CANCEL:
        text = f":white_check_mark: Cancelled maintenance #{window.id} *{title_of(window)}*.{where}"
    elif done.kind == DraftKind.EDIT:
        n = len(done.changes)
        changed = f"{n} change{'s' if n != 1 else ''}" if n else "no changes"
        text = f":white_check_mark: Saved maintenance #{window.id} *{title_of(window)}* ({changed}): {when(window.start, window.end)}.{where}"
    else:
        text = f":white_check_mark: Maintenance #{window.id} *{title_of(window)}* is scheduled: {when(window.start, window.end)}.{where}"
    blocks = [section(text)]
    if done.entered is not None:
        blocks.append(section(shifted_note(window, done.entered)))
    if done.warning:
        blocks.append(section(f":warning: {done.warning}"))
    return text, blocks


def _chunked(header: str, lines: Sequence[str], overflow: str) -> list[dict]:
    blocks = [section(header)]
    chunk: list[str] = []
    for line in lines:
        if chunk and len("\n".join(chunk + [line])) > 2900:
            blocks.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(section("\n".join(chunk)))
    if len(blocks) > MAX_MESSAGE_BLOCKS:
        blocks = blocks[: MAX_MESSAGE_BLOCKS - 1] + [context(overflow)]
    return blocks


def _listed_line(window: ListedWindow) -> str:
    title = fit(window.title, 80) if window.title.strip() else "(no reason given)"
    number = f"*#{window.number}*" if window.number is not None else ":new:"
    parts = [f"{number} {title}", state_label(window), when(window.start, window.end)]
    if window.servers or _backend(window).uses_servers:
        parts.append("servers: " + fit_list(window.servers, 200, none="none listed"))
    elif window.components:
        parts.append("components: " + fit_list(window.components, 200))
    if window.number is None:
        parts.append(f"{_backend(window).display_name} ID `{fit(window.upstream_id, 64)}`, _not announced yet_")
    return " · ".join(parts)


#: Later dates a series' line shows after its next window.
SERIES_DATES_SHOWN = 3


def _grouped_lines(listing: Listing) -> list[str]:
    """One line a window, except a series: once, at its soonest window, with how it repeats
    and its next dates after that one."""
    later: dict[int, list[ListedWindow]] = {}
    for window in listing.windows:
        if window.series_id is not None:
            later.setdefault(window.series_id, []).append(window)
    lines = []
    for window in listing.windows:
        group = later.get(window.series_id) if window.series_id is not None else None
        if group is None:
            lines.append(_listed_line(window))
            continue
        if group[0] is not window:
            continue
        rest = group[1:]
        dates = ", ".join(slack_date(w.start, "{date_short_pretty}") for w in rest[:SERIES_DATES_SHOWN])
        more = f" and {len(rest) - SERIES_DATES_SHOWN} more" if len(rest) > SERIES_DATES_SHOWN else ""
        rule = fit(listing.series.get(window.series_id, "a recurring series"), 200)
        after = f" · then {dates}{more}" if rest else ""
        lines.append(f"{_listed_line(window)} · :repeat: repeats {rule}{after}")
    return lines


def _provenance(listing: Listing) -> str | None:
    """Said first when the API did not answer: whose record this is, and how old."""
    if listing.problem is None:
        return None
    if listing.checked_at is None:
        age = f"sitrep has not reached {listing.service} since it started using this database"
    else:
        ago = duration(listing.now - listing.checked_at)
        age = f"last checked with {listing.service} {ago} ago ({slack_date(listing.checked_at)})"
    return f":warning: {fit(listing.problem, 1000)}\nSo this is *sitrep's own record*, {age}."


def window_list(listing: Listing) -> tuple[str, list[dict]]:
    """Upcoming and ongoing windows, soonest first, within Slack's 50-block limit; what
    does not fit is counted ("…and 12 more"), never silently dropped."""
    warning = _provenance(listing)
    head = [section(warning)] if warning else []
    windows = listing.windows
    if not windows:
        text = ":sunny: No maintenance scheduled. Schedule one with `/maintenance schedule`."
        return text, head + [section(text)]
    n = len(windows)
    source = " (sitrep's own record)" if warning else f" (checked with {listing.service} just now)"
    header = f"*{n} upcoming or ongoing maintenance window{'s' if n != 1 else ''}*{source}"
    tail: list[dict] = []
    if any(w.number is None for w in windows):
        tail.append(
            context(
                f":new: made {_backend(windows[0]).origin} directly: sitrep announces it in the channel at its next check "
                f"(every {duration(timedelta(seconds=listing.sync_interval))}), and gives it a number."
            )
        )
    room = MAX_MESSAGE_BLOCKS - len(head) - 1 - len(tail) - 1  # the header, and "…and N more"
    lines = _grouped_lines(listing)
    chunks: list[list[str]] = [[]]
    shown = 0
    for line in lines:
        if chunks[-1] and len("\n".join(chunks[-1] + [line])) > 2900:
            if len(chunks) == room:
                break
            chunks.append([])
        chunks[-1].append(line)
        shown += 1
    blocks = head + [section(header)] + [section("\n".join(chunk)) for chunk in chunks]
    if shown < n:
        blocks.append(context(f"…and {n - shown} more, not shown: Slack allows {MAX_MESSAGE_BLOCKS} blocks in a message."))
    return f"{n} maintenance window{'s' if n != 1 else ''}", blocks + tail


def status_answer(live: Sequence[tuple[BackendWindow, MaintenanceWindow | None]], service: str) -> tuple[str, list[dict]]:
    """What the API says is in progress right now."""
    if not live:
        text = f":sunny: No maintenance in progress right now, according to {service}."
        return text, [section(text)]
    lines = []
    for bw, ours in live:
        number = f"*#{ours.id}* " if ours is not None else ""
        title = fit(bw.title, 80) if bw.title.strip() else "(no reason given)"
        since = f"since {slack_date(bw.start)}" if bw.start else "started"
        until = f", until {slack_date(bw.end)}" if bw.end else ""
        targets = f" · servers: {fit_list(bw.servers, 200)}" if bw.servers else ""
        lines.append(f":construction: {number}{title} · {since}{until}{targets} · ID `{fit(bw.upstream_id, 100)}`")
    n = len(live)
    header = f"*{n} maintenance window{'s' if n != 1 else ''} in progress now* (from {service})"
    return f"{n} maintenance windows in progress", _chunked(header, lines, "More windows than one message can show.")


HELP = (
    "*`/maintenance`* — plan maintenance from Slack\n"
    "• `/maintenance schedule [title]` — schedule a window (also plain `/maintenance`)\n"
    "• `/maintenance list` — upcoming and ongoing windows, only to you\n"
    "• `/maintenance status` — what is in progress right now\n"
    "• `/maintenance edit <id>` — change a window's title, times or servers\n"
    "• `/maintenance cancel <id>` — call a window off\n"
    "• `/maintenance help` — this help\n"
    "`<id>` is the number the bot shows (`3` or `#3`) or the maintenance API's ID.\n"
    "• sitrep's *Home* tab — windows running and upcoming, with *Cancel* and *Schedule maintenance*\n"
    "If a schedule reaches the API but no answer comes back, you are told *Outcome unknown*: "
    "*Check and retry* (AppFirst), *It exists: link it* (status page) or *Create anyway*."
)


def help_answer(prefix: str | None = None) -> tuple[str, list[dict]]:
    text = f"{prefix}\n\n{HELP}" if prefix else HELP
    return text, [section(text)]


def follow_on_offer(reason: str, window_id: int) -> tuple[str, list[dict]]:
    """The status page cannot extend a window: say so plainly, and offer the next best thing."""
    return reason, [
        section(f":information_source: {reason}"),
        {
            "type": "actions",
            "elements": [kit_button("Schedule a follow-on window", OverrunId.FOLLOW_ON, str(window_id), "primary")],
        },
    ]
