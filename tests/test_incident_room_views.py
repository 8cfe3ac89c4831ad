"""The channel-per-incident messages as pure functions: the room's summary, the announcement
that names the room, and the declarer's private warnings fit Slack's limits and escape what
people typed."""

from __future__ import annotations

import json
from datetime import timedelta

from bot.messages import incident as messages
from bot.services.outcomes import Outcome
from handlers.incident import views
from store.models import Incident
from store.states import DraftKind
from tests.support.dates import T0
from tests.support.slack_limits import check_message

HOSTILE = "<!channel> & <@U999> " + "x" * 5000


def incident(
    *, title="DB down", resolved=False, room="C0ROOM", permalink="https://example.slack.com/archives/C123/p1"
) -> Incident:
    return Incident(
        id=12,
        upstream_id="3fa85f64-5717-4562-b3fc-000000000012",
        title=title,
        description=HOSTILE,
        status="Investigating",
        impact="Major Outage",
        components=[f"C{n}" for n in range(300)],
        channel_id="C123",
        declared_by="U123",
        declared_at=T0,
        updated_at=T0,
        update_count=3,
        resolved_at=T0 + timedelta(hours=2) if resolved else None,
        resolved_by="U456" if resolved else None,
        permalink=permalink,
        room_channel_id=room,
    )


def test_the_announcement_names_the_room_only_when_there_is_one():
    text, blocks = messages.announcement(incident(title=HOSTILE))
    check_message(blocks, text)
    assert "<#C0ROOM>" in json.dumps(blocks) and "<!channel>" not in json.dumps(blocks)
    _, blocks = messages.announcement(incident(room=None))
    assert "Channel" not in json.dumps(blocks)


def test_the_room_summary_fits_and_points_back_to_the_announcement():
    for resolved in (False, True):
        text, blocks = messages.room_summary(incident(title=HOSTILE, resolved=resolved))
        check_message(blocks, text)
        dumped = json.dumps(blocks)
        assert "<!channel>" not in dumped and "<!channel>" not in text
        assert "https://example.slack.com/archives/C123/p1" in dumped and "<#C123>" in dumped
        assert any(b["type"] == "actions" for b in blocks) is not resolved  # the same buttons while open
    _, blocks = messages.room_summary(incident(permalink=None))
    assert "<#C123>" in json.dumps(blocks)


def test_the_archive_refusal_fits_and_escapes_slacks_code():
    text, blocks = messages.room_archive_refused(incident(resolved=True), "<weird>&" * 100)
    check_message(blocks, text)
    assert "<#C0ROOM>" in text and "<weird>" not in text


def test_the_declarers_answer_with_room_warnings_fits():
    warning = " ".join(["Incident #12 is declared and announced, but I could not open its own channel: " + "x" * 900] * 3)
    text, blocks = views.done_answer(Outcome(DraftKind.DECLARE, incident(), permalink="https://x", warning=warning))
    check_message(blocks, text)
