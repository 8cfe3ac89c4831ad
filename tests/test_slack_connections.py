"""Every Slack client of a running bot shares one pool of keep-alive connections (#22): no new
TCP (and, in production, TLS) connection per call, which was most of a `views.open`'s cost
under fifty commands at once."""

from __future__ import annotations

from tests.support.harness import BotUnderTest, last_view
from tests.support.incidents import declare_values


def test_modals_and_posts_of_one_bot_reuse_one_connection(bot, slack):
    for n in range(3):
        bot.command(f"declare Outage {n}")
        slack.wait_for(lambda n=n: slack.count("views.open") == n + 1)
        # Its answer read and the connection back in the pool before the next command: the
        # fake counts a call when it arrives, and a loaded machine sent the next one while
        # the bot was still reading the last answer (a second connection, rightly).
        bot.settle()
    # One after another, each call finds the last one's connection idle: one connection.
    assert len(slack.connections("views.open")) == 1
    bot.submit(last_view(slack), declare_values(title="Checkout down"))
    slack.wait_for(lambda: slack.count("chat.postMessage") and slack.count("chat.postEphemeral"))
    methods = ("views.open", "chat.postMessage", "chat.postEphemeral")
    calls = sum(slack.count(method) for method in methods)
    used = set().union(*(slack.connections(method) for method in methods))
    # The announcement and the answer may go out at once (a second connection), never one each.
    assert calls >= 5 and 1 <= len(used) <= 2, (calls, used)


def test_a_slack_that_closes_each_connection_is_answered_on_a_new_one(bot, slack):
    """A server may end a kept-alive connection (`Connection: close`, an idle timeout): the
    pool must not hand out a closed connection, and no call may fail for it."""
    slack.close_connections = True
    for n in range(3):
        response = bot.command(f"declare Outage {n}")
        assert response.status_code == 200
        slack.wait_for(lambda n=n: slack.count("views.open") == n + 1)
    assert len(slack.connections("views.open")) == 3  # each on a connection of its own
    assert len(slack.views) >= 3 and slack.violations == []


def test_a_stopped_bot_closes_its_connections_and_its_clients_hold_none(settings):
    with BotUnderTest(settings) as running:
        ctx = running.ctx
        shared = ctx.slack_connections.session
        assert shared is not None and not shared.closed
        assert ctx.slack.session is shared and ctx.sender.session is shared and running.bot.bolt.client.session is shared
    assert shared.closed
    assert ctx.slack.session is None and ctx.sender.session is None and running.bot.bolt.client.session is None


def test_the_shared_session_keeps_the_slack_clients_timeout(bot):
    """slack_sdk applies a client's timeout only to the sessions it opens itself: the shared
    one must carry it, or a call to a Slack that never answers would wait forever."""
    session = bot.ctx.slack_connections.session
    assert session is not None and session.timeout.total == bot.ctx.slack.timeout == 10
