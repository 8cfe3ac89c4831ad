"""Queries on incidents and their timelines. Plain data in, models out; no Slack here."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, cast, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store import ids
from store.models import Incident, IncidentEvent
from store.states import IncidentEventKind


async def add_incident(session: AsyncSession, incident: Incident) -> Incident:
    session.add(incident)
    await session.flush()
    return incident


async def get_incident(session: AsyncSession, incident_id: int) -> Incident | None:
    return await session.get(Incident, incident_id)


async def by_draft(session: AsyncSession, draft_id: int) -> Incident | None:
    """The incident stored from this draft's send (`Incident.draft_id`), if any."""
    return await session.scalar(select(Incident).where(Incident.draft_id == draft_id).limit(1))


async def resolved_event(session: AsyncSession, incident_id: int) -> IncidentEvent | None:
    """The incident's resolution in its timeline, if it was resolved here."""
    rows = await session.execute(
        select(IncidentEvent)
        .where(IncidentEvent.incident_id == incident_id, IncidentEvent.kind == IncidentEventKind.RESOLVED)
        .order_by(IncidentEvent.id.desc())
        .limit(1)
    )
    return rows.scalars().first()


async def find_incident(session: AsyncSession, ref: str) -> Incident | None:
    """`ref` is the short number people see (`12`, `#12`) or the upstream ID, in any of its
    spellings (`store.ids.guid`). A number too large for any row is looked for only as an ID."""
    found = None
    number = ids.number(ref)
    if number is not None:
        found = await session.get(Incident, number)
    if found is not None or ref.strip().startswith("#"):
        return found
    return await by_upstream(session, ref)


async def by_upstream(session: AsyncSession, upstream_id: str) -> Incident | None:
    """The incident the status page knows as `upstream_id`, however it is spelled."""
    canonical = ids.guid(upstream_id)
    if canonical is None:
        return await session.scalar(select(Incident).where(Incident.upstream_id == upstream_id.strip()).limit(1))
    found = await session.scalar(select(Incident).where(Incident.upstream_id == canonical).limit(1))
    if found is None:  # kept in another spelling (before IDs were normalized): scan for it
        query = select(Incident).where(ids.spelled_as_guid(Incident.upstream_id) == ids.bare(canonical))
        found = await session.scalar(query.order_by(Incident.id).limit(1))
    return found


async def open_incidents(session: AsyncSession, *, limit: int, offset: int = 0) -> list[Incident]:
    """At most `limit` open incidents, newest first, skipping the `offset` newest: what a
    person is shown never loads every open incident."""
    query = select(Incident).where(Incident.resolved_at.is_(None)).order_by(Incident.id.desc()).offset(offset).limit(limit)
    return list((await session.execute(query)).scalars())


async def open_places(session: AsyncSession) -> list[tuple[int, str, str | None]]:
    """(id, announcement channel, own channel or None) of every open incident, newest first:
    three short columns, so who may see which is decided before any incident is loaded."""
    query = select(Incident.id, Incident.channel_id, Incident.room_channel_id).where(Incident.resolved_at.is_(None))
    return [tuple(row) for row in (await session.execute(query.order_by(Incident.id.desc()))).all()]


async def open_by_ids(session: AsyncSession, ids: list[int]) -> list[Incident]:
    """These open incidents, newest first."""
    if not ids:
        return []
    query = select(Incident).where(Incident.id.in_(ids), Incident.resolved_at.is_(None)).order_by(Incident.id.desc())
    return list((await session.execute(query)).scalars())


async def count_open(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(Incident).where(Incident.resolved_at.is_(None)))).scalar_one()


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def search_open(session: AsyncSession, *, number: str | None, words: list[str], limit: int) -> list[Incident]:
    """Open incidents for the picker's type-ahead, at most `limit`, filtered in the database:
    `number` (digits) finds those whose number starts with it, that one first; else every
    word must be in the number, title or upstream ID (case-insensitive). Newest first."""
    query = select(Incident).where(Incident.resolved_at.is_(None))
    if number is not None:
        query = query.where(cast(Incident.id, String).like(f"{number}%")).order_by(
            (cast(Incident.id, String) != number), Incident.id.desc()
        )
    else:
        haystack = cast(Incident.id, String) + " " + Incident.title + " " + Incident.upstream_id
        for word in words:
            # SQLite's lower() folds only ASCII letters: match the word folded or as typed.
            query = query.where(
                or_(
                    func.lower(haystack).like(f"%{_like_escaped(word.lower())}%", escape="\\"),
                    haystack.like(f"%{_like_escaped(word)}%", escape="\\"),
                )
            )
        query = query.order_by(Incident.id.desc())
    return list((await session.execute(query.limit(limit))).scalars())


async def add_event(
    session: AsyncSession, incident: Incident, *, kind: str, status: str, text: str, user_id: str, at: datetime
) -> IncidentEvent:
    event = IncidentEvent(incident_id=incident.id, kind=kind, status=status, text=text, user_id=user_id, at=at)
    session.add(event)
    await session.flush()
    return event


async def add_overlap(session: AsyncSession, incident: Incident, window: dict, *, at: datetime) -> IncidentEvent:
    """The timeline's record of a window that overlapped the incident's start."""
    event = IncidentEvent(
        incident_id=incident.id,
        kind=IncidentEventKind.OVERLAP,
        status=incident.status,
        text=f"{window['title']} ({window['where']})" if window["where"] else window["title"],
        user_id="",
        at=at,
        link=window["link"],
    )
    session.add(event)
    await session.flush()
    return event


async def by_room(session: AsyncSession, channel_id: str) -> Incident | None:
    """The incident whose own channel this is."""
    return (await session.execute(select(Incident).where(Incident.room_channel_id == channel_id))).scalars().first()


async def by_announcement(session: AsyncSession, channel_id: str, ts: str) -> Incident | None:
    """The incident announced by the message at `ts` in `channel_id`."""
    query = select(Incident).where(Incident.channel_id == channel_id, Incident.message_ts == ts)
    return (await session.execute(query)).scalars().first()


async def timeline(session: AsyncSession, incident_id: int) -> list[IncidentEvent]:
    """Every event of the incident, oldest first."""
    query = select(IncidentEvent).where(IncidentEvent.incident_id == incident_id).order_by(IncidentEvent.at, IncidentEvent.id)
    return list((await session.execute(query)).scalars())


async def pinned_event(session: AsyncSession, incident_id: int, message_ts: str) -> IncidentEvent | None:
    query = select(IncidentEvent).where(
        IncidentEvent.incident_id == incident_id,
        IncidentEvent.kind == IncidentEventKind.PINNED,
        IncidentEvent.message_ts == message_ts,
    )
    return (await session.execute(query)).scalars().first()


async def event_posted_by(session: AsyncSession, row_id: int) -> IncidentEvent | None:
    """The timeline event whose reply the `reminders` row `row_id` posts."""
    query = select(IncidentEvent).where(IncidentEvent.post_id == row_id)
    return (await session.execute(query)).scalars().first()


async def last_updater(session: AsyncSession, incident_id: int) -> str | None:
    """Who posted the incident's latest update, if anyone did."""
    query = (
        select(IncidentEvent.user_id)
        .where(IncidentEvent.incident_id == incident_id, IncidentEvent.kind == IncidentEventKind.UPDATE)
        .order_by(IncidentEvent.id.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar()


async def resolve_if_open(session: AsyncSession, incident_id: int, *, by: str | None, now: datetime) -> bool:
    """Compare-and-set: True for the one caller that recorded the resolution, so two people
    resolving at once never overwrite who did it.

    `by=None` follows the status page (it refused a resolve: resolved already), recorded
    only while open and naming nobody. A person's resolve the status page took (`by`) also
    replaces such a record: a refused resolve that reached the store first never wins it."""
    unclaimed = Incident.resolved_at.is_(None)
    if by is not None:
        unclaimed = unclaimed | Incident.resolved_by.is_(None)
    done = await session.execute(
        update(Incident).where(Incident.id == incident_id, unclaimed).values(resolved_at=now, resolved_by=by, updated_at=now)
    )
    return done.rowcount == 1


async def incidents_touching(session: AsyncSession, start: datetime, end: datetime) -> list[Incident]:
    """Incidents open at any moment of [start, end): declared before its end and not resolved
    before its start, oldest first (the weekly digest's incidents)."""
    query = (
        select(Incident)
        .where(Incident.declared_at < end, or_(Incident.resolved_at.is_(None), Incident.resolved_at >= start))
        .order_by(Incident.declared_at, Incident.id)
    )
    return list((await session.scalars(query)).all())


async def latest_resolved(session: AsyncSession, *, since: datetime) -> Incident | None:
    """The incident resolved most recently, if that was at `since` or later."""
    query = select(Incident).where(Incident.resolved_at >= since).order_by(Incident.resolved_at.desc(), Incident.id.desc())
    return await session.scalar(query.limit(1))
