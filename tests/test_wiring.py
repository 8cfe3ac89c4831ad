"""The context is built whole and never changed after (ARCHITECTURE: "nothing patched onto
`AppContext` after it is built"): what the scheduler and the handlers offer the services is
a port the context holds from its construction, which they connect to when they start."""

from __future__ import annotations

import asyncio

from bot.app import Sitrep
from bot.context import Port, build_context


def test_starting_and_stopping_the_bot_changes_no_part_of_its_context(settings):
    ctx = build_context(settings)
    before = {name: value for name, value in vars(ctx).items() if name != "_sender"}
    assert ctx.maintenance is not None and ctx.statuspage is not None  # built whole
    assert not ctx.notify_unknown.connected and not ctx.wake_reminders.connected

    async def run() -> tuple[bool, bool, bool]:
        bot = Sitrep(ctx, timers=False)
        await bot.start()
        connected = ctx.notify_unknown.connected, ctx.notify_done.connected, ctx.wake_reminders.connected
        await bot.stop()
        return connected

    assert asyncio.run(run()) == (True, True, True)
    after = {name: value for name, value in vars(ctx).items() if name != "_sender"}
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    assert not ctx.wake_reminders.connected  # the stopped scheduler let go of it


def test_a_port_nobody_answers_does_nothing_and_says_so():
    told = []

    async def tell(*args) -> None:
        told.append(args)

    port: Port = Port("tell someone")
    assert asyncio.run(port("x")) is False and told == []
    port.connect(tell)
    assert asyncio.run(port("x")) is True and told == [("x",)]


def test_every_listener_is_wrapped_to_answer_at_its_ack(settings):
    """Bolt runs with `process_before_response=True`: it answers when the listener function
    returns. Only the one wrapper (`handlers.errors.renders_errors`) returns at the ack with
    the rest of the work in a task of its own; a listener registered without it would hold
    every answer until its whole work was done."""
    from handlers.errors import renders_errors  # noqa: PLC0415 - the wrapper compared against

    bot = Sitrep(build_context(settings), timers=False)
    assert bot.bolt.process_before_response
    wrapper = renders_errors(bot.ctx, lambda ack, it: None).__code__
    listeners = bot.bolt._async_listeners  # noqa: SLF001 - Bolt offers no public list
    assert len(listeners) > 20
    assert [li.ack_function.__name__ for li in listeners if li.ack_function.__code__ is not wrapper] == []
