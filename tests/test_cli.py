"""`sitrep` as an operator meets it: a real process, real settings from the environment, the fakes
standing in for Slack and the APIs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import pytest

from bot.clients.slack import UNREADABLE_ANSWER
from tests.support.fakes.signing import command_body, slack_signature_headers
from tests.support.fakes.slack_api import WAIT_BOUND, Malformed
from tests.support.harness import CHANNEL, SIGNING_SECRET, free_port
from tests.support.process import SITREP, lines_starting, sitrep, start_sitrep

# --- sitrep check -------------------------------------------------------------------------------


def test_check_reaches_every_service(full_env, tmp_path):
    result = sitrep("check", env=full_env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for service in ("slack:", "status page:", "appfirst:", "database:"):
        (line,) = lines_starting(result.stdout, service)
        assert ": ok" in line, line
    assert "FAILED" not in result.stdout
    assert "Traceback" not in result.stderr


def test_check_says_what_is_not_configured(base_env, slack, tmp_path):
    env = base_env | {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.url,
        "SITREP_CHANNEL": CHANNEL,
    }
    result = sitrep("check", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines_starting(result.stdout, "status page: not configured")
    assert lines_starting(result.stdout, "appfirst: not configured")
    assert lines_starting(result.stdout, "incidents: disabled")


def test_check_fails_on_a_wrong_slack_token(full_env, tmp_path):
    token = "xoxb-wrong-secret-98765"
    result = sitrep("check", env=full_env | {"SLACK_BOT_TOKEN": token}, cwd=tmp_path)
    assert result.returncode != 0
    (line,) = lines_starting(result.stdout, "slack:")
    assert "FAILED" in line and "invalid_auth" in line
    assert token not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("malformed", list(Malformed), ids=lambda m: m.name.lower())
def test_check_names_an_answer_from_slack_that_is_not_slacks(full_env, slack, tmp_path, malformed):
    slack.fail_next("auth.test", malformed=malformed)  # a proxy's page, a cut body, no `ok`
    result = sitrep("check", env=full_env, cwd=tmp_path)
    assert result.returncode == 1
    (line,) = lines_starting(result.stdout, "slack:")
    assert line == f"slack: FAILED ({UNREADABLE_ANSWER} at {full_env['SLACK_API_URL']}auth.test)", line
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("variable", "service"), [("STATUSPAGE_API_KEY", "status page:"), ("APPFIRST_API_KEY", "appfirst:")])
def test_check_fails_on_a_wrong_api_key(full_env, tmp_path, variable, service):
    key = "wrong-secret-key-4242"
    result = sitrep("check", env=full_env | {variable: key}, cwd=tmp_path)
    assert result.returncode != 0
    (line,) = lines_starting(result.stdout, service)
    assert "FAILED" in line, line
    assert lines_starting(result.stdout, "slack: ok")
    assert key not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_check_fails_when_an_api_is_unreachable(full_env, tmp_path):
    port = free_port()
    result = sitrep("check", env=full_env | {"STATUSPAGE_URL": f"http://127.0.0.1:{port}"}, cwd=tmp_path)
    assert result.returncode != 0
    (line,) = lines_starting(result.stdout, "status page:")
    assert "FAILED" in line, line
    assert f"http://127.0.0.1:{port}/api/maintenance/status" in line, line


def test_check_names_the_url_it_reached(full_env, statuspage, appfirst, tmp_path):
    env = full_env | {"STATUSPAGE_URL": statuspage.url + "/api/", "APPFIRST_URL": appfirst.url + "/api"}
    result = sitrep("check", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines_starting(result.stdout, f"status page: ok ({statuspage.url}/api/maintenance/status)")
    assert lines_starting(result.stdout, f"appfirst: ok ({appfirst.url}/api/maintenance_windows/)")


@pytest.mark.parametrize(
    ("variable", "service", "path"),
    [("STATUSPAGE_URL", "status page:", "/api/maintenance/status"), ("APPFIRST_URL", "appfirst:", "/api/maintenance_windows/")],
)
def test_check_says_which_url_to_fix_on_a_404(full_env, tmp_path, variable, service, path):
    wrong = full_env[variable] + "/v2"
    result = sitrep("check", env=full_env | {variable: wrong}, cwd=tmp_path)
    assert result.returncode == 1
    (line,) = lines_starting(result.stdout, service)
    assert line == f"{service} FAILED (HTTP 404 from {wrong}{path} — check {variable})", line
    assert "try again" not in result.stdout.lower()
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["check", "run"])
def test_missing_variable_stops_with_one_line(base_env, tmp_path, command):
    env = base_env | {"SLACK_BOT_TOKEN": "xoxb-secret-value-1", "SLACK_SIGNING_SECRET": "signing-secret-2"}
    result = sitrep(command, env=env, cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "SITREP_CHANNEL" in lines[0]
    assert "Traceback" not in result.stderr
    for secret in ("xoxb-secret-value-1", "signing-secret-2"):
        assert secret not in result.stderr


def test_malformed_secret_is_not_echoed(base_env, tmp_path):
    env = base_env | {"SLACK_BOT_TOKEN": "badsecret123", "SLACK_SIGNING_SECRET": "s", "SITREP_CHANNEL": CHANNEL}
    result = sitrep("check", env=env, cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN" in result.stderr
    assert "badsecret123" not in result.stderr + result.stdout


def test_dot_env_in_the_working_directory_is_used(base_env, slack, tmp_path):
    (tmp_path / ".env").write_text(
        f"SLACK_BOT_TOKEN={slack.token}\nSLACK_SIGNING_SECRET={SIGNING_SECRET}\n"
        f"SLACK_API_URL={slack.url}\nSITREP_CHANNEL={CHANNEL}\n",
        encoding="utf-8",
    )
    result = sitrep("check", env=base_env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines_starting(result.stdout, "slack: ok")


# --- DATABASE_URL ------------------------------------------------------------------------------

BAD_DATABASES = {
    "unwritable": ("sqlite:///{tmp}/a-file/sitrep.db", "cannot be opened or written"),
    "no driver": ("postgresql+psycopg://sitrep:db-password-77@db.example.com/sitrep", "psycopg, which is not installed"),
    "unreachable": (
        "postgresql://sitrep:db-password-77@127.0.0.1:1/sitrep",
        "cannot be opened or written (ConnectionRefusedError",
    ),
    "unknown kind": ("nosuchdb://db.example.com/sitrep", "does not know (nosuchdb)"),
    "not a URL": ("sqlite:/", "expected"),
}


@pytest.mark.parametrize("case", list(BAD_DATABASES))
def test_a_bad_database_url_stops_run_with_one_line(full_env, tmp_path, case):
    (tmp_path / "a-file").write_text("a file where a directory should be")
    url, reason = BAD_DATABASES[case]
    result = sitrep("run", env=full_env | {"DATABASE_URL": url.format(tmp=tmp_path), "PORT": str(free_port())}, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sitrep: DATABASE_URL"), result.stderr
    assert reason in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert "db-password-77" not in result.stderr + result.stdout


@pytest.mark.parametrize("case", list(BAD_DATABASES))
def test_check_reports_a_bad_database_url_and_exits_2(full_env, tmp_path, case):
    (tmp_path / "a-file").write_text("a file where a directory should be")
    url, reason = BAD_DATABASES[case]
    result = sitrep("check", env=full_env | {"DATABASE_URL": url.format(tmp=tmp_path)}, cwd=tmp_path)
    if case == "not a URL":  # caught with the other settings, before anything is reached
        assert result.returncode == 2 and "DATABASE_URL" in result.stderr and result.stdout == ""
        return
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = lines_starting(result.stdout, "database:")
    assert line.startswith("database: FAILED (DATABASE_URL") and reason in line, line
    assert lines_starting(result.stdout, "slack: ok") and lines_starting(result.stdout, "status page: ok")
    assert "Traceback" not in result.stderr + result.stdout
    assert "db-password-77" not in result.stderr + result.stdout


# --- the console script -------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["check", "--help"]])
def test_console_script_help(base_env, tmp_path, args):
    assert SITREP.exists(), f"the sitrep console script is not installed next to {sys.executable}"
    result = subprocess.run([str(SITREP), *args], env=base_env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: sitrep")
    if args == ["--help"]:
        assert "run" in result.stdout and "check" in result.stdout and "--version" in result.stdout
    elif args[0] == "run":
        assert "Socket Mode" in result.stdout and "POST /slack/events" in result.stdout and "SIGTERM" in result.stdout
    else:
        assert "auth.test" in result.stdout and "Exit 0" in result.stdout and "2 for a bad setting" in result.stdout


def test_version_comes_from_the_package(base_env, tmp_path):
    from importlib.metadata import version

    result = subprocess.run([str(SITREP), "--version"], env=base_env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"sitrep {version('sitrep')}"


def test_no_command_prints_usage(base_env, tmp_path):
    result = subprocess.run([str(SITREP)], env=base_env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "usage: sitrep" in result.stderr


# --- sitrep run (HTTP mode) -----------------------------------------------------------------------


def test_run_serves_healthz_and_slack_then_stops_on_sigterm(full_env, tmp_path):
    port = free_port()
    env = full_env | {"PORT": str(port)}
    process = start_sitrep(env, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        healthy = False
        deadline = time.monotonic() + WAIT_BOUND  # only a start that never comes reaches it (a loaded machine)
        while time.monotonic() < deadline and process.poll() is None:
            try:
                answer = httpx.get(f"{base}/healthz", timeout=1)
                if answer.status_code == 200 and answer.json() == {"ok": True}:
                    healthy = True
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert healthy, f"GET /healthz did not answer within {WAIT_BOUND:.0f} s"

        body = command_body("/incident", "help")
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        headers |= slack_signature_headers(SIGNING_SECRET, body)
        answer = httpx.post(f"{base}/slack/events", content=body, headers=headers, timeout=5)
        assert answer.status_code == 200, answer.text
        unsigned = httpx.post(f"{base}/slack/events", content=body, headers={"Content-Type": headers["Content-Type"]})
        assert unsigned.status_code == 401

        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=WAIT_BOUND)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert "Traceback" not in output
    assert "will be unused" not in output  # Bolt's warning about SLACK_BOT_TOKEN in the environment
    for secret in (full_env["SLACK_BOT_TOKEN"], SIGNING_SECRET, full_env["STATUSPAGE_API_KEY"], full_env["APPFIRST_API_KEY"]):
        assert secret not in output
