"""A team's first hour, as a real `sitrep` process meets it: a placeholder or revoked bot token,
a token without the scopes, a bot not in its channel, a database `check` must not touch, and
the exit codes docs/operating.md promises."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from bot import cli
from store.migrations import HEAD
from tests.support.harness import free_port
from tests.support.process import kill, lines_starting, signed_post, sitrep, start_sitrep, wait_healthy

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def http_env(full_env) -> dict[str, str]:
    return full_env | {"PORT": str(free_port()), "METRICS_PORT": str(free_port())}


def only_line(output: str, needle: str) -> str:
    """The output is that one line (plus nothing but blank space): no traceback, no noise."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], output
    return lines[0]


# --- item 1: a bot token Slack refuses stops start-up in one line --------------------------------


def test_the_placeholder_token_of_env_example_stops_run_in_one_line(http_env, tmp_path):
    """The .env.example a newcomer copies holds `xoxb-your-bot-token`: Slack answers invalid_auth."""
    placeholder = re.search(r"^SLACK_BOT_TOKEN=(\S+)$", (REPO / ".env.example").read_text(), re.MULTILINE).group(1)
    done = sitrep("run", env=http_env | {"SLACK_BOT_TOKEN": placeholder}, cwd=tmp_path)
    assert done.returncode == cli.EXIT_REFUSED
    line = only_line(done.stderr, "SLACK_BOT_TOKEN")
    assert line.startswith("sitrep: Slack refused SLACK_BOT_TOKEN (invalid_auth)") and placeholder not in line


@pytest.mark.parametrize("error", ["token_revoked", "account_inactive", "not_authed"])
def test_a_revoked_or_inactive_token_stops_run_in_one_line(http_env, slack, tmp_path, error):
    slack.fail_next("auth.test", error=error)
    done = sitrep("run", env=http_env, cwd=tmp_path)
    assert done.returncode == cli.EXIT_REFUSED
    assert only_line(done.stderr, "SLACK_BOT_TOKEN").startswith(f"sitrep: Slack refused SLACK_BOT_TOKEN ({error})")


def test_a_token_without_the_scopes_stops_run_naming_every_missing_one(http_env, slack, tmp_path):
    slack.grant({"commands"})  # installed from an old or hand-made manifest
    done = sitrep("run", env=http_env, cwd=tmp_path)
    assert done.returncode == cli.EXIT_REFUSED
    line = only_line(done.stderr, "SLACK_BOT_TOKEN lacks the scopes")
    assert (
        "chat:write, channels:history, groups:history, channels:read, groups:read, users:read" in line
        and "sitrep manifest" in line
    )


def test_a_token_that_may_read_the_channel_but_not_post_is_caught_too(http_env, slack, tmp_path):
    """conversations.history succeeds with a history scope alone: the scopes Slack names on
    auth.test's answer (X-OAuth-Scopes) show chat:write and the rest missing all the same."""
    slack.grant({"commands", "channels:history", "groups:history"})
    done = sitrep("run", env=http_env, cwd=tmp_path)
    assert done.returncode == cli.EXIT_REFUSED
    line = only_line(done.stderr, "SLACK_BOT_TOKEN lacks the scopes")
    named = line.split("lacks the scopes ", 1)[1].split(" that sitrep needs", 1)[0].split(", ")
    assert {"chat:write", "channels:read", "groups:read", "users:read"} <= set(named), line
    assert not {"commands", "channels:history", "groups:history"} & set(named), line
    checked = sitrep("check", env=http_env, cwd=tmp_path)
    (channel,) = lines_starting(checked.stdout, "channel: FAILED")
    assert "chat:write" in channel and checked.returncode == cli.EXIT_REFUSED


def test_with_a_channel_per_incident_its_scope_is_named_too(http_env, slack, tmp_path):
    slack.grant({"commands"})
    done = sitrep("check", env=http_env | {"SITREP_INCIDENT_CHANNELS": "on"}, cwd=tmp_path)
    (line,) = lines_starting(done.stdout, "channel: FAILED")
    # Every scope the enabled features need, the incident channels' own among them (the list
    # grows with features: the test names what it is about, not the whole list's order).
    named = line.split("lacks the scopes ", 1)[1].split(" that sitrep needs", 1)[0].split(", ")
    assert {"chat:write", "channels:history", "users:read", "channels:manage"} <= set(named), line
    assert "commands" not in named  # granted


def test_a_bot_not_in_its_channel_starts_with_one_warning_and_readyz_says_so(http_env, slack, tmp_path):
    channel = slack.add_channel("ops-announcements", members=("UHUMAN",))
    process = start_sitrep(http_env | {"SITREP_CHANNEL": channel}, tmp_path)
    try:
        base = f"http://127.0.0.1:{http_env['PORT']}"
        wait_healthy(base, process)
        import httpx  # noqa: PLC0415 - only this test reads /readyz over HTTP

        checks = httpx.get(f"{base}/readyz", timeout=5).json()["checks"]
        assert "/invite @sitrep" in checks["channel"]
        # It still answers people: /incident help works while nobody has invited it.
        assert signed_post(base, "command=%2Fincident&text=help&user_id=U1&channel_id=C1&trigger_id=t").status_code == 200
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
        kill(process)
    warnings = [line for line in output.splitlines() if "not in SITREP_CHANNEL" in line]
    assert len(warnings) == 1 and "invite the bot: `/invite @sitrep`" in warnings[0], output


# --- item 3: `sitrep check` never writes, and checks the channel ------------------------------------


@pytest.mark.parametrize(("members", "error"), [(("UHUMAN",), "not_in_channel"), ((), "channel_not_found")])
def test_check_names_a_forgotten_invite(full_env, slack, tmp_path, members, error):
    channel = slack.add_channel("ops", private=not members, members=members)
    done = sitrep("check", env=full_env | {"SITREP_CHANNEL": channel}, cwd=tmp_path)
    assert done.returncode == cli.EXIT_REFUSED
    (line,) = lines_starting(done.stdout, "channel:")
    assert (
        line
        == f"channel: FAILED (the bot is not in SITREP_CHANNEL {channel} ({error}): invite the bot: `/invite @sitrep` in that channel)"
    )


def test_check_does_not_create_a_missing_sqlite_file(full_env, tmp_path):
    path = tmp_path / "new.db"
    done = sitrep("check", env=full_env | {"DATABASE_URL": f"sqlite:///{path}"}, cwd=tmp_path)
    assert done.returncode == cli.EXIT_OK, done.stdout + done.stderr
    (line,) = lines_starting(done.stdout, "database:")
    assert line.startswith("database: ok (empty") and "sitrep migrate" in line
    assert not path.exists() and list(tmp_path.glob("new.db*")) == []


def _revision(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def _contents(path: Path) -> list[str]:
    """Schema and rows (the file's bytes move when the WAL is checkpointed at a close)."""
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_check_leaves_an_old_schema_as_it_is_and_says_to_migrate(full_env, tmp_path):
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    assert sitrep("migrate", env=full_env | {"DATABASE_URL": url}, cwd=tmp_path).returncode == 0
    with sqlite3.connect(path) as conn:  # as an older sitrep left it
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    before = _contents(path)
    done = sitrep("check", env=full_env | {"DATABASE_URL": url}, cwd=tmp_path)
    assert done.returncode == cli.EXIT_REFUSED
    (line,) = lines_starting(done.stdout, "database:")
    assert line == f"database: schema at 0001, this version needs {HEAD}: run `sitrep migrate`"
    assert _revision(path) == "0001" and _contents(path) == before


@pytest.mark.parametrize("fresh_database_url", ["sqlite", "postgresql"], indirect=True)
def test_check_never_migrates(full_env, tmp_path, fresh_database_url):
    """On either database: an empty one stays empty (no alembic_version appears)."""
    done = sitrep("check", env=full_env | {"DATABASE_URL": fresh_database_url}, cwd=tmp_path)
    assert done.returncode == cli.EXIT_OK, done.stdout + done.stderr
    assert lines_starting(done.stdout, "database: ok (empty")
    again = sitrep("check", env=full_env | {"DATABASE_URL": fresh_database_url}, cwd=tmp_path)
    assert lines_starting(again.stdout, "database: ok (empty")  # still empty: nothing was written
    assert sitrep("migrate", env=full_env | {"DATABASE_URL": fresh_database_url}, cwd=tmp_path).returncode == 0
    done = sitrep("check", env=full_env | {"DATABASE_URL": fresh_database_url}, cwd=tmp_path)
    assert lines_starting(done.stdout, f"database: ok (schema at {HEAD})")


# --- exit codes: what docs/operating.md promises is what sitrep does ---------------------------------


def documented_exit_codes() -> dict[int, str]:
    text = (REPO / "docs" / "operating.md").read_text(encoding="utf-8")
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    return {int(code): meaning for code, meaning in re.findall(r"^\| `(\d+)` \| (.+) \|$", section, re.MULTILINE)}


def test_every_exit_code_is_documented():
    assert set(documented_exit_codes()) == {cli.EXIT_OK, cli.EXIT_REFUSED, cli.EXIT_SETTINGS}


def test_the_exit_codes_are_the_documented_ones(full_env, base_env, tmp_path):
    codes = documented_exit_codes()
    assert "all" in codes[cli.EXIT_OK] or "stopped" in codes[cli.EXIT_OK]
    assert sitrep("check", env=full_env, cwd=tmp_path).returncode == cli.EXIT_OK == 0
    bad_token = sitrep("check", env=full_env | {"SLACK_BOT_TOKEN": "xoxb-revoked"}, cwd=tmp_path)
    assert bad_token.returncode == cli.EXIT_REFUSED == 1
    missing = sitrep("run", env=base_env, cwd=tmp_path)
    assert missing.returncode == cli.EXIT_SETTINGS == 2
    # Every missing variable of the run at once, one line each.
    assert lines_starting(missing.stderr, "sitrep: SLACK_BOT_TOKEN is required")
    assert lines_starting(missing.stderr, "sitrep: SITREP_CHANNEL is required")
    assert lines_starting(missing.stderr, "sitrep: SLACK_SIGNING_SECRET is required")
    assert sitrep("frobnicate", env=base_env, cwd=tmp_path).returncode == cli.EXIT_SETTINGS


def test_compose_starts_with_env_example_as_given():
    """Every `${VAR:?…}` compose.yml insists on is set in .env.example."""
    compose = (REPO / "compose.yml").read_text(encoding="utf-8")
    required = set(re.findall(r"\$\{(\w+):\?", compose))
    example = dict(re.findall(r"^(\w+)=(.*)$", (REPO / ".env.example").read_text(encoding="utf-8"), re.MULTILINE))
    assert required and required <= {k for k, v in example.items() if v}, required - set(example)
