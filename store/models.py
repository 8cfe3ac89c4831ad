"""SQLAlchemy 2 typed models. The store is the record of what the bot did: neither API
lists incidents, and reminders must survive restarts, so everything lives here."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from store.states import DraftState, IncidentState, ReminderState, WindowState


class UTCDateTime(TypeDecorator):
    """Stored as naive UTC (SQLite keeps no zone), always handed back aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON, list[int]: JSON}


class Incident(Base):
    """An incident the bot declared. `id` is the short number people type (`#12`)."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    upstream_id: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(32))
    impact: Mapped[str] = mapped_column(String(32))
    components: Mapped[list[str]] = mapped_column(default=list)
    notify: Mapped[bool] = mapped_column(default=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    message_ts: Mapped[str | None] = mapped_column(String(32), default=None)
    permalink: Mapped[str | None] = mapped_column(String(500), default=None)
    #: The message it was declared from (the *Declare incident* shortcut), linked from the announcement.
    source_link: Mapped[str | None] = mapped_column(String(500), default=None)
    declared_by: Mapped[str] = mapped_column(String(32))
    declared_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    update_count: Mapped[int] = mapped_column(default=0)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_by: Mapped[str | None] = mapped_column(String(32), default=None)
    #: Its own channel (SITREP_INCIDENT_CHANNELS) and the summary message kept current there.
    room_channel_id: Mapped[str | None] = mapped_column(String(32), default=None)
    room_message_ts: Mapped[str | None] = mapped_column(String(32), default=None)
    # The first announcement is claimed like a window's (`store.announcements`), from the
    # moment the incident is stored: a claim left by a process now gone is recovered.
    announce_token: Mapped[int] = mapped_column(default=0, server_default="0")
    announce_claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    announce_claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    #: The draft it was declared from (None: linked or made before 0013): the crash recovery
    #: tells that draft's person it was declared, not "outcome unknown".
    draft_id: Mapped[int | None] = mapped_column(index=True, default=None)

    @property
    def state(self) -> IncidentState:
        return IncidentState.of(self.resolved_at)

    @property
    def is_open(self) -> bool:
        return self.state == IncidentState.OPEN


class IncidentEvent(Base):
    """One step of an incident's timeline: declared, an update, resolved."""

    __tablename__ = "incident_events"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text, default="")
    user_id: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    message_ts: Mapped[str | None] = mapped_column(String(32), default=None)


class Draft(Base):
    """What a person submitted, kept until the upstream accepted it, so nothing typed is lost."""

    __tablename__ = "drafts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str | None] = mapped_column(String(32), default=None)
    payload: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16), default=DraftState.SENDING)  # a DraftState
    error: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    #: The instance (`Instance.id`) sending it while "sending"; None: nobody (released).
    sent_by: Mapped[str | None] = mapped_column(String(64), default=None)
    #: The Slack submission (`bot.inbound.replays.submission_key`) it was kept from: Submit pressed
    #: again after a crash is a replay only when the first press left a draft.
    submission_key: Mapped[str | None] = mapped_column(String(200), index=True, default=None)


class Instance(Base):
    """A running sitrep process and when it last said it is alive, on the database's clock
    (hosts' clocks may disagree). A draft whose sender has no fresh heartbeat was left
    mid-send by a process that is gone."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime] = mapped_column(index=True)


class MaintenanceWindow(Base):
    """A maintenance window on one backend. `id` is the short number people type."""

    __tablename__ = "maintenance_windows"
    __table_args__ = (
        UniqueConstraint("backend", "upstream_id"),
        # One window per occurrence of a series (a unique index: SQLite adds it in place).
        Index("uq_maintenance_windows_series_occurrence", "series_id", "series_index", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    backend: Mapped[str] = mapped_column(String(16))
    upstream_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(500), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    start: Mapped[datetime]
    end: Mapped[datetime | None] = mapped_column(default=None)  # None: the backend did not say (status page's in-progress list)
    #: The end when the window was first stored: a later `end` past it means it was extended.
    planned_end: Mapped[datetime | None] = mapped_column(default=None)
    components: Mapped[list[str]] = mapped_column(default=list)
    servers: Mapped[list[int]] = mapped_column(default=list)
    state: Mapped[str] = mapped_column(String(16), default=WindowState.SCHEDULED)  # a WindowState
    channel_id: Mapped[str | None] = mapped_column(String(32), default=None)
    message_ts: Mapped[str | None] = mapped_column(String(32), default=None)
    created_by: Mapped[str | None] = mapped_column(String(32), default=None)  # None: made outside Slack
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    cancelled_by: Mapped[str | None] = mapped_column(String(32), default=None)  # None: not by someone in Slack
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)
    # The first announcement is claimed like a reminder (`store.announcements`): a fencing
    # token bumped by each claim, and when the claim was taken on the database's clock.
    announce_token: Mapped[int] = mapped_column(default=0, server_default="0")
    announce_claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    announce_claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    #: The draft it was scheduled from (None: made outside Slack), as for incidents.
    draft_id: Mapped[int | None] = mapped_column(index=True, default=None)
    #: The recurring series it is an occurrence of, and which one (0 = the first).
    series_id: Mapped[int | None] = mapped_column(default=None)
    series_index: Mapped[int | None] = mapped_column(default=None)
    #: How its series repeats, in words, and when the series' next window after it starts
    #: (None: the last one), kept on the row so the announcement is built from the row alone.
    series_rule: Mapped[str | None] = mapped_column(String(300), default=None)
    series_next: Mapped[datetime | None] = mapped_column(default=None)


class MaintenanceSeries(Base):
    """A recurring maintenance window: the rule (`bot.services.recurrence.Recurrence`, kept
    field by field) and what each occurrence is created with. Neither API knows recurrence:
    each occurrence is created as an ordinary window ahead of time."""

    __tablename__ = "maintenance_series"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    backend: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    components: Mapped[list[str]] = mapped_column(default=list)  # component IDs, as the form sends them
    servers: Mapped[list[int]] = mapped_column(default=list)
    repeat: Mapped[str] = mapped_column(String(16))  # a Repeat
    zone: Mapped[str] = mapped_column(String(64))
    first_date: Mapped[str] = mapped_column(String(10))  # local date of the first occurrence, ISO
    at_time: Mapped[str] = mapped_column(String(5))  # local start time, HH:MM
    length_minutes: Mapped[int]
    weekdays: Mapped[list[int]] = mapped_column(default=list)
    until_date: Mapped[str | None] = mapped_column(String(10), default=None)
    count: Mapped[int | None] = mapped_column(default=None)
    #: Occurrences from this index on were called off ("this and the following"); None: none.
    ends_before: Mapped[int | None] = mapped_column(default=None)
    created_by: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SeriesOccurrence(Base):
    """The claim on creating one occurrence upstream: the primary key makes the first insert
    win across replicas, so an occurrence is created once however many roll the series."""

    __tablename__ = "series_occurrences"

    series_id: Mapped[int] = mapped_column(ForeignKey("maintenance_series.id"), primary_key=True)
    index: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    state: Mapped[str] = mapped_column(String(16))  # an OccurrenceState
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)  # database clock
    window_id: Mapped[int | None] = mapped_column(default=None)


class Reminder(Base):
    """One reminder of one window, or the update nudge of one incident (`incident_id` set,
    `window_id` empty); the row, not the scheduler, is the truth about it. Nudges share the
    table so they share the due query, the claims and the scheduler's wake-ups."""

    __tablename__ = "reminders"
    __table_args__ = (
        UniqueConstraint("window_id", "kind"),
        UniqueConstraint("incident_id", "kind"),
        Index("ix_reminders_state_due_at", "state", "due_at"),  # what is due now, what is next
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    window_id: Mapped[int | None] = mapped_column(ForeignKey("maintenance_windows.id"), index=True, default=None)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), index=True, default=None)
    kind: Mapped[str] = mapped_column(String(16))  # a ReminderKind
    due_at: Mapped[datetime] = mapped_column(index=True)
    state: Mapped[str] = mapped_column(String(16), default=ReminderState.PENDING)  # a ReminderState
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    posted_at: Mapped[datetime | None] = mapped_column(default=None)
    message_ts: Mapped[str | None] = mapped_column(String(32), default=None)
    late: Mapped[bool] = mapped_column(default=False)
    # Bumped by every claim: a post or write is made only while the token is still the one
    # this process claimed with (fencing), so a claim taken over never posts.
    claim_token: Mapped[int] = mapped_column(default=0, server_default="0")
    # Slack answered 429: not posted before this time (on the bot's clock, like `due_at`).
    not_before: Mapped[datetime | None] = mapped_column(default=None)


class WeeklyDigest(Base):
    """One weekly digest, by when it is due: the primary key makes one replica's plan win,
    so each week has one `Reminder` row (kind `digest`) however many replicas plan it."""

    __tablename__ = "weekly_digests"

    due_at: Mapped[datetime] = mapped_column(primary_key=True)
    reminder_id: Mapped[int]


class UpstreamFact(Base):
    """Something learned about an upstream that must outlive the process, such as the
    offset AppFirst adds to the times it is sent, or when its list last answered."""

    __tablename__ = "upstream_facts"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # e.g. "appfirst.offset"
    value: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]


class SeenSubmission(Base):
    """A Slack request already acted on (a form's view id and hash, or a trigger id): a
    replay or a Slack retry finds its key here and does nothing. The primary key makes the
    first insert win even across replicas sharing the database."""

    __tablename__ = "seen_submissions"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(index=True)


class ChannelPace(Base):
    """The pace of one Slack method in one channel (`channel` "*": in the whole workspace, for
    the methods Slack limits per workspace), shared by every replica: the next free
    send slot ("theoretical arrival time" of a generic cell-rate limiter), in seconds since
    the epoch on the database's clock. Each send reserves its slot with one atomic update,
    so replicas together keep the channel's rate, never each on its own."""

    __tablename__ = "channel_pace"

    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    method: Mapped[str] = mapped_column(String(32), primary_key=True)
    next_slot: Mapped[float] = mapped_column(Float, default=0.0)
