"""The named states of what sitrep keeps, and the window's state machine in one place.

Columns stay `String` holding these values (a `StrEnum` compares equal to its value), so
rows written before these names existed still load."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum


class WindowState(StrEnum):
    """Where a maintenance window is: scheduled → in progress → completed, or cancelled."""

    SCHEDULED = "scheduled"
    """Its start is ahead; reminders are planned."""
    IN_PROGRESS = "in_progress"
    """Started (by its time, or the upstream says so) and not ended."""
    COMPLETED = "completed"
    """Its end has passed."""
    CANCELLED = "cancelled"
    """Called off from Slack, or deleted upstream."""

    @property
    def active(self) -> bool:
        """Still ahead or under way: reminders and the Cancel button apply."""
        return self in ACTIVE_WINDOW_STATES

    @classmethod
    def at(cls, start: datetime, end: datetime | None, now: datetime, in_progress: bool | None = None) -> WindowState:
        """The state a window is in at `now`: the upstream's "in progress" first, then its times."""
        if in_progress:
            return cls.IN_PROGRESS
        if end is not None and end <= now:
            return cls.COMPLETED
        if start <= now:
            return cls.IN_PROGRESS
        return cls.SCHEDULED

    def can_become(self, new: WindowState) -> bool:
        """The allowed moves: forward only, and nothing leaves completed or cancelled.
        (A window moved into the future goes back to scheduled: `rescheduled`.)"""
        return new in _MOVES.get(self, ())

    def rescheduled(self, start: datetime, now: datetime) -> WindowState:
        """After its times changed: one in progress whose start moved ahead has not started."""
        if self is WindowState.IN_PROGRESS and start > now:
            return WindowState.SCHEDULED
        return self


ACTIVE_WINDOW_STATES = (WindowState.SCHEDULED, WindowState.IN_PROGRESS)
_MOVES: dict[WindowState, tuple[WindowState, ...]] = {
    WindowState.SCHEDULED: (WindowState.IN_PROGRESS, WindowState.COMPLETED, WindowState.CANCELLED),
    WindowState.IN_PROGRESS: (WindowState.COMPLETED, WindowState.CANCELLED),
}


class IncidentState(StrEnum):
    """Where an incident is: open → resolved; nothing reopens it (the status page has no call
    that does). Not a column: `Incident.resolved_at` holds it (`Incident.state`)."""

    OPEN = "open"
    """Declared or linked, not resolved: updates, nudges and Resolve apply."""
    RESOLVED = "resolved"
    """Resolved from Slack (`resolved_by` names who, and a `resolved` event says when), or
    found resolved on the status page when a resolve was refused there (`resolved_by` empty
    until a resolve the status page took replaces it, see `store.incidents.resolve_if_open`)."""

    @classmethod
    def of(cls, resolved_at: datetime | None) -> IncidentState:
        return cls.OPEN if resolved_at is None else cls.RESOLVED


class IncidentEventKind(StrEnum):
    """One step of an incident's timeline (`IncidentEvent.kind`)."""

    DECLARED = "declared"
    """Declared from Slack (or linked after an outcome unknown), with its first status."""
    UPDATE = "update"
    """An update sent to the status page, with its status and text."""
    RESOLVED = "resolved"
    """Resolved from Slack; its `message_ts` is the *Resolved* reply in the thread."""
    LEAD = "lead"
    """The lead changed; `text` is the new lead's user ID, `user_id` who changed it."""
    OVERLAP = "overlap"
    """A maintenance window running (or just ended) when it was declared (`text` names it, `link` its thread)."""
    PINNED = "pinned"
    """A message pinned with :pushpin: (its text, `user_id` its author, `link`, `message_ts`)."""


RESOLVED_STATUS = "Resolved"
"""The status a resolution shows (the status page's own word; never in SITREP_INCIDENT_STATUSES)."""


class ReminderKind(StrEnum):
    """What a reminder row is: the four of a window, or an incident's update nudge."""

    HEADS_UP = "heads_up"
    """SITREP_REMINDER_LEAD minutes before the start."""
    STARTED = "started"
    """At the start; moves the window to in progress."""
    OVERRUN = "overrun"
    """SITREP_OVERRUN_WARNING minutes before a running window's end: "still working?"."""
    ENDED = "ended"
    """At the end; moves the window to completed."""
    NUDGE = "nudge"
    """An open incident quiet for SITREP_UPDATE_NUDGE minutes; re-armed after each post."""
    ARCHIVE = "archive"
    """SITREP_ARCHIVE_AFTER hours after a resolution: archive the incident's own channel."""
    RESOLVED = "resolved"
    """An incident's resolve notice in its thread, due at once: written with the resolution,
    so a crash before the post leaves it to be posted (`bot.services.notices`)."""
    CANCELLED = "cancelled"
    """A window's cancel notice in its thread, the same way (written with the cancellation)."""
    LEAD = "lead"
    """An incident's lead-change reply in its thread, due at once: written with the change
    (its `IncidentEvent.post_id` names the row; the row has no `incident_id`, as an incident
    changes lead any number of times), posted like a resolve notice."""
    POSTMORTEM = "postmortem"
    """An incident's postmortem draft shared as a file in its thread, one per incident:
    written claimed with the resolution or by `/incident postmortem`, whichever is first
    (`bot.services.postmortem`)."""
    POSTMORTEM_FINAL = "postmortem_final"
    """The postmortem as resolved, shared as a second file in the thread: written with the
    resolution when the draft was shared before it (the resolve's figures exist only then)."""
    CANVAS = "canvas"
    """The postmortem draft as the canvas of the incident's own channel, one per incident:
    written with the `postmortem` row (its `message_ts` holds the canvas's ID)."""
    CANVAS_FINAL = "canvas_final"
    """The canvas's text replaced by the postmortem as resolved: written with the resolution
    when the canvas was made before it."""
    DIGEST = "digest"
    """The weekly digest in SITREP_CHANNEL at SITREP_DIGEST's time (one row a week, planned
    a week ahead; `store.models.WeeklyDigest` makes it one)."""

    @property
    def of_window(self) -> bool:
        return self not in (
            ReminderKind.NUDGE,
            ReminderKind.ARCHIVE,
            ReminderKind.RESOLVED,
            ReminderKind.CANCELLED,
            ReminderKind.DIGEST,
            ReminderKind.LEAD,
            ReminderKind.POSTMORTEM,
            ReminderKind.POSTMORTEM_FINAL,
            ReminderKind.CANVAS,
            ReminderKind.CANVAS_FINAL,
        )

    @property
    def moves_window_to(self) -> WindowState | None:
        return {ReminderKind.STARTED: WindowState.IN_PROGRESS, ReminderKind.ENDED: WindowState.COMPLETED}.get(self)


class ReminderState(StrEnum):
    """One reminder row's life: pending → claimed → posted or skipped; or cancelled."""

    PENDING = "pending"
    """Waiting for its due time."""
    CLAIMED = "claimed"
    """One process is posting it now (taken over when the claim goes stale)."""
    POSTED = "posted"
    """In Slack."""
    SKIPPED = "skipped"
    """Recorded only: too late to matter."""
    CANCELLED = "cancelled"
    """Its window was cancelled, or no longer has this reminder."""


class DraftState(StrEnum):
    """A kept submission: sending → done, failed (then Retry sends it again) or unknown."""

    SENDING = "sending"
    """Being sent now by the instance in `sent_by`; when that instance is gone (no
    heartbeat) the draft becomes unknown, so none stays sending."""
    FAILED = "failed"
    """The last send failed; Retry or Edit from the error message."""
    UNKNOWN = "unknown"
    """A create was sent and no answer came (or its sender died mid-call): it may exist
    upstream. Check and retry, Create anyway, or Link the one that exists."""
    DONE = "done"
    """The upstream took it (or the person linked the one it made)."""


class ClaimResult(StrEnum):
    """What claiming a due reminder gave this process."""

    FRESH = "fresh"
    """Claimed a pending reminder."""
    STALE = "stale"
    """Took over a claim whose process died: it may have posted already."""
    NONE = "none"
    """Another process has it."""


class Delivery(StrEnum):
    """What to do with a reminder at the time it is delivered."""

    POST = "post"
    """Post it as due."""
    LATE = "late"
    """Post it, saying it is late."""
    SKIP = "skip"
    """Record it only: too late to matter."""


class DraftKind(StrEnum):
    """What a kept submission is; `feature` says whose listeners reopen and retry it.
    The values are the stored ones, so drafts kept before this enum still load."""

    DECLARE = "incident.declare"
    """Declare an incident."""
    UPDATE = "incident.update"
    """Post an update on an incident."""
    RESOLVE = "incident.resolve"
    """Resolve an incident."""
    SCHEDULE = "maintenance.schedule"
    """Schedule a maintenance window."""
    EDIT = "maintenance.edit"
    """Edit a maintenance window."""
    CANCEL = "maintenance.cancel"
    """Cancel a maintenance window."""

    @property
    def feature(self) -> str:
        """`incident` or `maintenance`."""
        return self.value.split(".", 1)[0]

    @property
    def creates(self) -> bool:
        """Makes something new upstream: sent twice, it makes two (the rest change one thing)."""
        return self in (DraftKind.DECLARE, DraftKind.SCHEDULE)


class OccurrenceState(StrEnum):
    """Where the creation of one occurrence of a recurring series is."""

    CREATING = "creating"
    """Claimed: its creator is sending it upstream (taken over when that instance is gone)."""
    CREATED = "created"
    """Upstream has it and the store has its window (`window_id`)."""
    UNKNOWN = "unknown"
    """The create got no answer and the upstream cannot be asked (the status page): the
    series' creator is told to check; it is not sent again blindly."""
