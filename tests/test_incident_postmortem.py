"""An incident's postmortem draft, shared in its thread as a Markdown file, through the real
bot over HTTP against the fake Slack and status page, on SQLite and PostgreSQL: on resolve
and with `/incident postmortem`, exactly once (a second command, a replayed resolve, a
share taken over from a dead process); an upload failure is told plainly and retried."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from bot.services.postmortem import CANVAS, FILE, filename
from scheduler.reminders import run_due_reminders
from store.models import Reminder
from store.states import ReminderKind, ReminderState
from tests.support.harness import CHANNEL
from tests.support.incidents import declare, open_modal, resolve_values
from tests.support.reminders import planned_then_died, record_lost

pytestmark = pytest.mark.both_databases

POSTMORTEM_KINDS = (*FILE, *CANVAS)


def resolve(bot, slack, incident) -> dict:
    view = open_modal(bot, slack, lambda: bot.command(f"resolve {incident.id}"))
    bot.submit(view, resolve_values(incident.id))
    # Its own answer: the declare's, and a postmortem command's, may come before or after it.
    slack.wait_for(lambda: [e for e in slack.calls_to("chat.postEphemeral") if "Resolved incident" in e["text"]])
    return view


def shares(slack):
    return slack.shared_files(CHANNEL)


def rows(bot, *, all_kinds: bool = False):
    """The postmortem's rows: the first file's, or (`all_kinds`) every share's."""
    kinds = list(POSTMORTEM_KINDS) if all_kinds else [ReminderKind.POSTMORTEM]
    return rows_of(bot, *kinds)


def rows_of(bot, *kinds):
    async def read():
        async with bot.ctx.db.session() as session:
            query = select(Reminder).where(Reminder.kind.in_(kinds)).order_by(Reminder.id)
            return list((await session.execute(query)).scalars())

    return bot.run(read())


def all_posted(bot) -> bool:
    return all(r.state == ReminderState.POSTED for r in rows(bot, all_kinds=True))


def test_the_command_shares_the_draft_in_the_thread_once(bot, slack, statuspage):
    incident = declare(bot, slack)
    slack.forget_calls()  # the declare answered privately already
    bot.command(f"postmortem #{incident.id}")
    [shared] = slack.wait_for(lambda: shares(slack))
    assert (shared["name"], shared["thread_ts"]) == (filename(incident.id), incident.message_ts)
    assert shared["title"] == f"Postmortem draft for #{incident.id}"
    text = shared["content"].decode()
    assert text.startswith(f"# Postmortem: incident #{incident.id} DB down")
    assert "## Timeline" in text and "## What caused it" in text
    [get] = slack.calls_to("files.getUploadURLExternal")
    assert int(get["length"]) == len(shared["content"])
    answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]
    assert "postmortem draft" in answer["text"] and f"#{incident.id}" in answer["text"]
    assert [r.state for r in rows(bot)] == [ReminderState.POSTED]

    # A second command (the reference optional: one incident open) shares nothing more.
    slack.forget_calls()
    bot.command("postmortem")
    answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]
    assert "already" in answer["text"]
    assert slack.calls_to("files.completeUploadExternal") == []
    assert len(shares(slack)) == 1


def test_resolve_shares_the_draft_once_and_a_later_command_does_not_again(bot, slack, statuspage):
    incident = declare(bot, slack)
    view = resolve(bot, slack, incident)
    [shared] = slack.wait_for(lambda: shares(slack))
    assert shared["thread_ts"] == incident.message_ts
    assert "Time to resolve:** " in shared["content"].decode()
    assert "still open" not in shared["content"].decode()
    # Resolved: the reference is optional for an incident resolved today.
    slack.forget_calls()
    bot.command("postmortem")
    answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]
    assert "already" in answer["text"]
    # The resolve submitted again (a replay) is refused, resolved already, and shares nothing.
    slack.forget_calls()
    assert bot.submit(view, resolve_values(incident.id)).status_code == 200
    bot.run(bot.ctx.channel.settle())
    assert bot.run(run_due_reminders(bot.ctx)) == 0
    assert len(shares(slack)) == 1
    assert slack.calls_to("files.completeUploadExternal") == []


def test_a_share_left_by_a_dead_process_is_made_once_by_the_scheduler(bot, slack, statuspage):
    incident = declare(bot, slack)
    planned_then_died(bot, incident.id, ReminderKind.POSTMORTEM)
    assert bot.run(run_due_reminders(bot.ctx)) == 1
    assert len(shares(slack)) == 1
    assert bot.run(run_due_reminders(bot.ctx)) == 0
    assert len(shares(slack)) == 1


def test_a_share_that_reached_slack_before_the_crash_is_found_not_made_again(bot, slack, statuspage):
    incident = declare(bot, slack)
    slack.forget_calls()  # the declare answered privately already
    bot.command(f"postmortem #{incident.id}")
    slack.wait_for(lambda: rows(bot) and rows(bot)[0].state == ReminderState.POSTED)
    record_lost(bot, ReminderKind.POSTMORTEM)  # shared, then the process died before recording it
    slack.forget_calls()
    assert bot.run(run_due_reminders(bot.ctx)) == 0
    assert slack.calls_to("files.getUploadURLExternal") == []  # found in the thread by its name
    assert len(shares(slack)) == 1
    assert rows(bot)[0].state == ReminderState.POSTED


def test_an_upload_failure_is_told_plainly_and_the_share_is_not_lost(bot, slack, statuspage):
    incident = declare(bot, slack)
    slack.fail_next_upload(500)
    slack.forget_calls()  # the declare answered privately already
    bot.command(f"postmortem #{incident.id}")
    answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]
    assert "could not be shared" in answer["text"] and "HTTP 500" in answer["text"]
    assert "Nothing is lost" in answer["text"]
    assert shares(slack) == []
    [row] = rows(bot)
    assert row.state == ReminderState.PENDING and row.not_before is not None

    async def due_now() -> None:  # the minute has passed
        async with bot.ctx.db.session() as session, session.begin():
            await session.execute(update(Reminder).where(Reminder.id == row.id).values(not_before=None))

    bot.run(due_now())
    assert bot.run(run_due_reminders(bot.ctx)) == 1
    assert len(shares(slack)) == 1
    assert rows(bot)[0].state == ReminderState.POSTED


def test_slack_refusing_the_share_is_told_plainly(bot, slack, statuspage):
    incident = declare(bot, slack)
    slack.fail_next("files.completeUploadExternal", "not_in_channel")
    slack.forget_calls()  # the declare answered privately already
    bot.command(f"postmortem #{incident.id}")
    answer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]
    assert "`not_in_channel`" in answer["text"]
    assert shares(slack) == []
    assert rows(bot)[0].state == ReminderState.PENDING


def test_the_command_refuses_plainly(bot, slack, statuspage):
    assert "No incident is open or was resolved today" in bot.command("postmortem").text
    assert "I don't know an incident `#99`" in bot.command("postmortem #99").text
    assert shares(slack) == []


def test_the_draft_names_people_by_their_slack_names_and_by_id_when_slack_will_not_say(bot, slack, statuspage):
    slack.set_user("U123", real_name="Ada Lovelace")
    incident = declare(bot, slack)
    bot.command(f"lead #{incident.id} <@U777|grace>")
    slack.wait_for(lambda: [r.state for r in rows_of(bot, ReminderKind.LEAD)] == [ReminderState.POSTED])
    slack.wait_for(lambda: len(slack.calls_to("chat.postEphemeral")) == 1)  # the lead's answer
    slack.fail_next("users.info", "user_not_found")
    slack.fail_next("users.info", "user_not_found")
    bot.command(f"postmortem #{incident.id}")
    [shared] = slack.wait_for(lambda: shares(slack))
    text = shared["content"].decode()
    # Slack would not describe either: their IDs, never a mention Markdown cannot render.
    assert "**Lead:** U777" in text and "by U123" in text
    assert "<@" not in text

    # Named once Slack says (then kept: each asked once more, not once per mention).
    slack.forget_calls()
    resolve(bot, slack, incident)
    slack.wait_for(lambda: len(rows(bot, all_kinds=True)) == 2 and all_posted(bot))
    [final] = [s for s in shares(slack) if s["name"] == filename(incident.id, final=True)]
    text = final["content"].decode()
    assert "**Lead:** User U777" in text and "by Ada Lovelace" in text and "U123" not in text
    assert sorted(c["user"] for c in slack.calls_to("users.info")) == ["U123", "U777"]


def test_a_draft_shared_before_the_resolve_is_shared_again_as_resolved_once(bot, slack, statuspage):
    incident = declare(bot, slack)
    slack.forget_calls()  # the declare answered privately already
    bot.command(f"postmortem #{incident.id}")
    [draft] = slack.wait_for(lambda: shares(slack))
    assert "still open" in draft["content"].decode()
    view = resolve(bot, slack, incident)
    slack.wait_for(lambda: len(rows(bot, all_kinds=True)) == 2 and all_posted(bot))
    assert [r.kind for r in rows(bot, all_kinds=True)] == [ReminderKind.POSTMORTEM, ReminderKind.POSTMORTEM_FINAL]
    final = shares(slack)[1]
    assert (final["name"], final["thread_ts"]) == (filename(incident.id, final=True), incident.message_ts)
    assert final["title"] == f"Postmortem draft for #{incident.id}, as resolved"
    assert "Time to resolve:** " in final["content"].decode() and "still open" not in final["content"].decode()
    # Once: a replayed resolve, the scheduler and the command share nothing more.
    slack.forget_calls()
    assert bot.submit(view, resolve_values(incident.id)).status_code == 200
    bot.run(bot.ctx.channel.settle())
    assert bot.run(run_due_reminders(bot.ctx)) == 0
    bot.command(f"postmortem #{incident.id}")
    assert "already" in slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[-1]["text"]
    assert len(shares(slack)) == 2 and slack.calls_to("files.completeUploadExternal") == []


def test_the_final_share_left_by_a_dead_process_is_found_not_made_again(bot, slack, statuspage):
    incident = declare(bot, slack)
    slack.forget_calls()  # the declare answered privately already
    bot.command(f"postmortem #{incident.id}")
    slack.wait_for(lambda: shares(slack))
    resolve(bot, slack, incident)
    slack.wait_for(lambda: len(rows(bot, all_kinds=True)) == 2 and all_posted(bot))
    record_lost(bot, ReminderKind.POSTMORTEM_FINAL)  # shared, then the process died before recording it
    slack.forget_calls()
    assert bot.run(run_due_reminders(bot.ctx)) == 0
    assert slack.calls_to("files.getUploadURLExternal") == []  # the final file found by its own name
    assert len(shares(slack)) == 2
    assert all_posted(bot)
