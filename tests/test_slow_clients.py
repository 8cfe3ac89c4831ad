"""Slow clients cannot starve the server: `sitrep run` as a real process under the common
1,024-descriptor limit, while one client holds 1,100 sockets on it (idle, or with headers
half sent, as in the incident), still answers Slack's signed requests; every slow socket is
closed, and the log says so in a line a second at most. Loopback only, bounded."""

from __future__ import annotations

import asyncio
import logging
import resource
import selectors
import socket
import subprocess
import sys
import time

import pytest

from bot.inbound.guard import HEADER_TIMEOUT, AcceptFailures, SlowClientLog
from tests.support.fakes.signing import command_body
from tests.support.harness import free_port
from tests.support.process import signed_post, wait_healthy

HELD = 1_100  # sockets the slow client holds at once, as in the incident
NOFILE = 1_024  # the bot's descriptor limit: its connection limit is half of it
ACKS = 10


def launch(env: dict[str, str], cwd, log) -> subprocess.Popen:
    """`sitrep run` with the descriptor limit of many hosts (set by the shell that execs it)."""
    return subprocess.Popen(
        ["/bin/sh", "-c", f'ulimit -n {NOFILE} && exec "$0" -m bot run', sys.executable],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def hold(port: int, n: int) -> list[socket.socket]:
    """`n` connections: every other one sends half a request's headers, the rest nothing."""
    held = []
    for i in range(n):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if i % 2:
            sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: sitrep\r\nContent-Type: application/x-www-")
        held.append(sock)
    return held


def wait_all_closed(held: list[socket.socket], timeout: float) -> int:
    """Until the server closed every socket (end of file or reset); how many it closed."""
    selector = selectors.DefaultSelector()
    for sock in held:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    closed, deadline = 0, time.monotonic() + timeout
    while closed < len(held) and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            try:
                if key.fileobj.recv(4096):
                    continue  # an answer before the close: read on
            except BlockingIOError:
                continue
            except OSError:
                pass  # reset
            selector.unregister(key.fileobj)
            closed += 1
    selector.close()
    return closed


@pytest.fixture
def room_for_the_slow_client():
    """This test process holds `HELD` sockets: raise its own soft limit if it is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = HELD + 512
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"this test needs {need} descriptors; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_client_holding_1100_idle_sockets_does_not_stop_slacks_requests(full_env, tmp_path, slack, room_for_the_slow_client):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "sitrep.log"
    held: list[socket.socket] = []
    with log_path.open("wb") as log:
        process = launch(full_env | {"PORT": str(port)}, tmp_path, log)
        try:
            wait_healthy(base, process)
            began = time.monotonic()
            held = hold(port, HELD)
            answers, took = [], []
            for _ in range(ACKS):
                sent = time.monotonic()
                answers.append(signed_post(base, command_body("/incident", "help"), timeout=10))
                took.append(time.monotonic() - sent)
            closed = wait_all_closed(held, timeout=HEADER_TIMEOUT + 30)
            elapsed = time.monotonic() - began
            # And the server still takes requests after the flood.
            after = signed_post(base, command_body("/incident", "help"), timeout=10)
        finally:
            for sock in held:
                sock.close()
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=40)
    output = log_path.read_text(errors="replace")
    lines = [line for line in output.splitlines() if "slow HTTP connection(s)" in line]
    print(
        f"\nheld {HELD} slow sockets; {sum(a.status_code == 200 for a in answers)}/{ACKS} signed acks meanwhile "
        f"(slowest {max(took):.2f} s); {closed} closed by the server within {elapsed:.1f} s; "
        f"{len(lines)} log line(s) about them, {len(output.encode())} bytes of log in all"
    )
    assert [a.status_code for a in answers] == [200] * ACKS, [a.text for a in answers]
    assert all("/incident declare" in a.json()["text"] for a in answers)
    assert after.status_code == 200
    assert closed == HELD
    assert 1 <= len(lines) <= elapsed + 2, lines  # at most one a second, however many were closed
    assert "Traceback" not in output, output[-3000:]
    assert len(output.encode()) < 64 * 1024


def test_slow_clients_are_logged_a_line_an_interval_however_many(caplog):
    """The first closes are logged at once; those after it wait for the interval and are summed."""

    async def lines(n: int) -> None:
        deadline = asyncio.get_running_loop().time() + 10
        while len(caplog.records) < n and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert len(caplog.records) == n, [r.getMessage() for r in caplog.records]

    async def flood() -> None:
        report = SlowClientLog(interval=0.2)
        for i in range(500):
            report.closed("no request headers within 10 s", f"10.0.0.{i % 7}")
        await lines(1)  # at once, for all 500
        for _ in range(300):
            report.closed("closed at the connection limit, waiting for headers", "10.0.0.1")
        await lines(2)  # once the interval is over, for all 300
        assert report.total == 800

    with caplog.at_level(logging.WARNING, logger="bot.inbound.guard"):
        asyncio.run(flood())
    first, second = (r.getMessage() for r in caplog.records)
    assert first.startswith("closed 500 slow HTTP connection(s) from 7 address(es) (10.0.0.0, 10.0.0.1, 10.0.0.2, ...)")
    assert second.startswith("closed 300 slow HTTP connection(s) from 1 address(es) (10.0.0.1)")


def test_failed_accepts_are_counted_not_logged_with_a_traceback_each():
    async def accept_failures() -> tuple[list[bool], int]:
        report = SlowClientLog()
        failures = AcceptFailures(report)
        records = [
            logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, (), None)
            for msg in ("socket.accept() out of system resource\nsocket: <fd=10>", "Task was destroyed but it is pending!")
        ]
        return [failures.filter(r) for r in records], report.total

    assert asyncio.run(accept_failures()) == ([False, True], 1)
