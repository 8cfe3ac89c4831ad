"""`sitrep run --sandbox` / `SITREP_SANDBOX=1`: stand-ins for the status page and AppFirst inside
the process, answering as the seeds describe, so a Slack workspace can try every command
before a real status page is connected; every announcement says it is the sandbox."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bot.messages.sandbox import SANDBOX_NOTE, SANDBOX_PREFIX, answer_in_sandbox, in_sandbox
from bot.sandbox import SANDBOX_COMPONENTS, Sandbox
from bot.services.maintenance import MaintenanceService
from bot.services.maintenance_forms import ScheduleForm
from bot.settings import SettingsError, load_settings
from handlers.incident.ids import Block as IncidentBlock
from scheduler.reminders import run_due_reminders
from store.states import DraftKind
from tests.support.dates import T0
from tests.support.fakes.signing import interaction_body
from tests.support.harness import CHANNEL, SIGNING_SECRET, BotUnderTest, FakeClock, free_port, submission_payload
from tests.support.incidents import declare, declare_values, open_modal, resolve_values, thread_replies, update_values
from tests.support.maintenance import schedule_values
from tests.support.process import SPEC_VARIABLES, command_modal, lines_starting, signed_post, sitrep, start_sitrep, wait_healthy
from tests.support.reminders import reminder_posts
from tests.support.slack_limits import check_message

API = SANDBOX_COMPONENTS[0].id

# --- the stand-ins answer as the seeds document -------------------------------------------------


async def test_status_page_stand_in_answers_as_seeds_004_and_000():
    async with Sandbox() as sandbox:
        sp = sandbox.statuspage
        key = {"X-API-KEY": sp.api_key}
        async with httpx.AsyncClient(base_url=sp.url, timeout=5) as http:
            # Seed 004, create: the example body, answered ApiResponse<Guid>.
            create = {
                "Title": "Database Connectivity Issues",
                "Description": "We are investigating reports of database timeouts.",
                "Status": "Investigating",
                "Impact": "Major Outage",
                "AffectedComponents": ["3fa85f64-5717-4562-b3fc-2c963f66afa0"],
                "IsNotify": True,
            }
            created = await http.post("/api/admin/Incident", json=create, headers=key)
            assert created.status_code == 200
            body = created.json()
            assert body["Success"] is True and body["Message"] == "Incident created successfully"
            incident_id = body["Result"]
            assert len(incident_id) == 36 and incident_id.count("-") == 4  # a GUID

            answer = await http.post("/api/admin/Incident", json={**create, "Title": ""}, headers=key)
            assert answer.status_code == 400
            assert answer.json() == {"Success": False, "Result": None, "Message": "Title is required."}
            for headers in ({}, {"X-API-KEY": "wrong"}):
                answer = await http.post("/api/admin/Incident", json=create, headers=headers)
                assert answer.status_code == 401
                assert answer.json() == {"Success": False, "Result": None, "Message": "Invalid or missing API key."}

            # Seed 004, update: the reply has no Result at all; an unknown ID is refused.
            update = {"IncidentId": incident_id, "Description": "Fix applied.", "Status": "Identified"}
            answer = await http.put("/api/admin/Incident", json=update, headers=key)
            assert answer.status_code == 200
            assert answer.json() == {"Success": True, "Message": "Incident updated successfully"}
            answer = await http.put("/api/admin/Incident", json={**update, "IncidentId": "nope"}, headers=key)
            assert answer.status_code == 400 and answer.json()["Message"] == "Incident ID not found."

            # Seed 004, resolve, and resolving twice.
            resolve = {"IncidentId": incident_id}
            answer = await http.post("/api/admin/Incident/ResolveIncident", json=resolve, headers=key)
            assert answer.json() == {"Success": True, "Message": "Incident resolved successfully"}
            answer = await http.post("/api/admin/Incident/ResolveIncident", json=resolve, headers=key)
            assert answer.status_code == 400
            assert answer.json() == {"Success": False, "Result": None, "Message": "Incident already resolved."}

            # Seed 000: a maintenance window, and the bad schedule.
            now = datetime.now(UTC).replace(microsecond=0)
            window = {
                "Title": "Scheduled Database Maintenance",
                "Type": "Maintenance",
                "Description": "We will be performing routine database optimizations.",
                "StartDate": (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "EndDate": (now + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "AffectedComponents": ["3fa85f64-5717-4562-b3fc-2c963f66afa0"],
            }
            answer = await http.post("/api/admin/Incident", json=window, headers=key)
            assert answer.json()["Success"] is True and answer.json()["Message"] == "Maintenance scheduled"
            running_id = answer.json()["Result"]
            later = {
                **window,
                "StartDate": window["EndDate"],
                "EndDate": (now + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            assert (await http.post("/api/admin/Incident", json=later, headers=key)).json()["Success"] is True
            backwards = {**window, "StartDate": window["EndDate"], "EndDate": window["StartDate"]}
            answer = await http.post("/api/admin/Incident", json=backwards, headers=key)
            assert answer.status_code == 400
            assert answer.json() == {"Success": False, "Result": None, "Message": "End date must be after start date."}

            # Seed 000, ongoing: a bare list with the seed's four fields. Nobody marks windows
            # in progress on a stand-in, so the running one is listed and the later one is not.
            ongoing = await http.get("/api/maintenance/status", headers=key)
            assert ongoing.status_code == 200
            assert ongoing.json() == [
                {
                    "IncidentId": running_id,
                    "Title": "Scheduled Database Maintenance",
                    "Status": "In Progress",
                    "StartDate": window["StartDate"],
                }
            ]
            assert (await http.get("/api/maintenance/status")).status_code == 401


async def test_appfirst_stand_in_answers_as_seed_003_times_shifted_and_all():
    async with Sandbox() as sandbox:
        af = sandbox.appfirst
        auth = (af.email, af.api_key)
        async with httpx.AsyncClient(base_url=af.url, auth=auth, timeout=5) as http:
            # The seed's POST, byte for byte: sent 14:00, stored and answered 19:00.
            sent = "start=2012-10-20 14:00&end=2012-10-20 15:00&reason=server updates&servers=[1,2,3]"
            form = {"Content-Type": "application/x-www-form-urlencoded"}
            created = await http.post("/api/maintenance_windows/", content=sent, headers=form)
            assert created.status_code == 200
            window_id = created.json()["id"]
            assert created.json() == {
                "id": window_id,
                "url": f"/api/v5/maintenance_windows/{window_id}/",
                "start": "2012-10-20 19:00:00",
                "end": "2012-10-20 20:00:00",
                "reason": "server updates",
                "servers": [1, 2, 3],
            }
            # The seed's PUT: the same reply without "reason".
            updated = await http.put(f"/api/maintenance_windows/{window_id}/", content=sent, headers=form)
            assert updated.json() == {
                "id": window_id,
                "url": f"/api/v5/maintenance_windows/{window_id}/",
                "start": "2012-10-20 19:00:00",
                "end": "2012-10-20 20:00:00",
                "servers": [1, 2, 3],
            }
            # The seed's list: {pagination, data} with epoch numbers and started/ended.
            listed = await http.get("/api/maintenance_windows/", params={"limit": 10, "page": 0})
            assert listed.json() == {
                "pagination": {"count": 1, "next": None, "previous": None},
                "data": [
                    {
                        "id": window_id,
                        "reason": "server updates",
                        "start": int(datetime(2012, 10, 20, 19, tzinfo=UTC).timestamp()),
                        "end": int(datetime(2012, 10, 20, 20, tzinfo=UTC).timestamp()),
                        "started": True,
                        "ended": True,
                        "servers": [1, 2, 3],
                        "url": f"/api/v5/maintenance_windows/{window_id}/",
                    }
                ],
            }
            assert (await http.get("/api/maintenance_windows/", params={"limit": 2501})).status_code == 400
            assert (await http.get(f"/api/maintenance_windows/{window_id}/")).json()["id"] == window_id
            assert (await http.delete(f"/api/maintenance_windows/{window_id}/")).status_code == 204
            assert (await http.get(f"/api/maintenance_windows/{window_id}/")).status_code == 404
            refused = await http.get("/api/maintenance_windows/", auth=(af.email, "wrong"))
            assert refused.status_code == 401


async def test_stand_ins_stop_and_take_their_throwaway_database_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    sandbox = Sandbox()
    await sandbox.start()
    url = sandbox.statuspage.url
    [folder] = list(tmp_path.iterdir())
    await sandbox.stop()
    assert not folder.exists()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"{url}/api/maintenance/status")


# --- settings -------------------------------------------------------------------------------------


@pytest.fixture
def env(monkeypatch, tmp_path):
    for name in SPEC_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    for name, value in {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "SITREP_CHANNEL": "C0123456789"}.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_sandbox_needs_no_status_page_settings(env):
    env.setenv("SITREP_SANDBOX", "1")
    env.setenv("MAINTENANCE_BACKEND", "appfirst")  # without APPFIRST_URL: the stand-in is it
    settings = load_settings()
    assert settings.sitrep_sandbox and settings.maintenance_backend == "appfirst"
    env.delenv("SITREP_SANDBOX")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert refused.value.variable == "MAINTENANCE_BACKEND"


def test_a_malformed_sandbox_setting_is_named(env):
    env.setenv("SITREP_SANDBOX", "maybe")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert str(refused.value) == "SITREP_SANDBOX is not valid: expected 1 or 0 (true or false)."


async def test_sandbox_settings_point_at_the_stand_ins_and_a_throwaway_database(env):
    env.setenv("SITREP_SANDBOX", "true")
    env.setenv("STATUSPAGE_URL", "https://status.example.com")
    env.setenv("DATABASE_URL", "sqlite:///production.db")
    async with Sandbox() as sandbox:
        settings = sandbox.configure(load_settings())
        assert settings.statuspage_url == sandbox.statuspage.url
        assert settings.statuspage_api_key.get_secret_value() == sandbox.statuspage.api_key
        assert settings.appfirst_url == sandbox.appfirst.url
        assert settings.database_url.endswith("/sitrep-sandbox.db") and "production" not in settings.database_url
        assert settings.sitrep_components == SANDBOX_COMPONENTS
        assert settings.incidents_enabled and settings.maintenance_enabled


# --- the announcement line ------------------------------------------------------------------------


def test_sandbox_note_is_the_last_block_and_fits_slacks_limits():
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}] * 49
    text, marked = in_sandbox(("a" * 4000, blocks))
    check_message(marked, text)
    assert text.startswith(SANDBOX_PREFIX) and len(text) <= 4000
    assert marked[-1] == {"type": "context", "elements": [{"type": "mrkdwn", "text": SANDBOX_NOTE}]}
    assert marked[:-1] == blocks


def test_outside_the_sandbox_announcements_carry_no_sandbox_line(bot, slack):
    incident = declare(bot, slack)
    [posted] = [m for m in slack.messages(CHANNEL) if m["ts"] == incident.message_ts]
    assert not posted["text"].startswith(SANDBOX_PREFIX) and SANDBOX_NOTE not in json.dumps(posted["blocks"])


def test_in_the_sandbox_every_reply_and_private_answer_says_so(settings, slack, statuspage):
    """Not only the announcement: thread replies (updates, reminders, nudges go the same way),
    the private answers in an ack, and those sent afterwards (ephemeral or DM)."""
    with BotUnderTest(settings.model_copy(update={"sitrep_sandbox": True})) as bot:
        helped = bot.command("help")
        assert marked_as_sandbox(helped.json()["text"], helped.json()["blocks"])
        incident = declare(bot, slack)  # its "declared" answer is an ephemeral, sent after the ack
        view = open_modal(bot, slack, lambda: bot.command("update 1"))
        bot.submit(view, update_values(incident.id))
        [reply] = slack.wait_for(lambda: thread_replies(slack, incident))
    assert marked_as_sandbox(reply["text"], reply["blocks"]), reply
    told = slack.ephemerals()
    assert told and all(marked_as_sandbox(e["text"], e["blocks"]) for e in told), told


def test_in_the_sandbox_reminders_and_the_postmortem_share_say_so(settings, slack, statuspage):
    """The scheduler's posts too: a window's heads-up reminder in its thread, and the
    postmortem draft shared in the incident's thread on the resolve (its title)."""
    clock = FakeClock(T0)
    settings = settings.model_copy(update={"sitrep_sandbox": True, "sitrep_overrun_warning": 0})
    with BotUnderTest(settings, clock=clock) as bot:
        start = clock() + timedelta(minutes=30)
        form = ScheduleForm(title="DB upgrade", start=start, end=start + timedelta(hours=1))
        window = bot.run(MaintenanceService(bot.ctx).submit(DraftKind.SCHEDULE, form, user_id="U123", channel_id=CHANNEL))
        clock.advance(minutes=15)  # the heads-up's time
        assert bot.run(run_due_reminders(bot.ctx)) == 1
        [heads_up] = reminder_posts(slack, window.record, "heads_up")
        incident = declare(bot, slack)
        view = open_modal(bot, slack, lambda: bot.command(f"resolve {incident.id}"))
        bot.submit(view, resolve_values(incident.id))
        [shared] = slack.wait_for(lambda: slack.shared_files(CHANNEL))
    blocks = json.loads(heads_up["blocks"]) if isinstance(heads_up["blocks"], str) else heads_up["blocks"]
    assert marked_as_sandbox(heads_up["text"], blocks), heads_up
    assert shared["thread_ts"] == incident.message_ts and shared["title"].startswith(SANDBOX_PREFIX), shared


def test_a_text_only_answer_keeps_its_text_when_marked():
    text, blocks = answer_in_sandbox("Nothing is open.", None)
    assert text == SANDBOX_PREFIX + "Nothing is open."
    assert blocks[0]["text"]["text"] == "Nothing is open." and blocks[-1]["elements"][0]["text"] == SANDBOX_NOTE
    check_message(blocks, text)


# --- a real process --------------------------------------------------------------------------------


def signed_ok(base: str, body: str) -> httpx.Response:
    answer = signed_post(base, body)
    assert answer.status_code == 200, answer.text
    return answer


def submit(base: str, view: dict, values: dict) -> None:
    signed_ok(base, interaction_body(submission_payload(view, values)))


def told(slack, count: int) -> str:
    """The person's `count`-th private answer."""
    answer = slack.wait_for(lambda: len(slack.ephemerals()) >= count and slack.ephemerals()[count - 1])
    return answer["text"] + json.dumps(answer.get("blocks"))


def parents(slack) -> list[dict]:
    return [m for m in slack.messages(CHANNEL) if not m.get("thread_ts")]


def marked_as_sandbox(text: str, blocks: list[dict]) -> bool:
    return text.startswith(SANDBOX_PREFIX) and blocks[-1]["elements"][0]["text"] == SANDBOX_NOTE


@pytest.fixture
def sandbox_env(base_env, slack, tmp_path) -> dict[str, str]:
    """Slack's settings and a port: no status page, no AppFirst."""
    (tmp_path / "tmp").mkdir()
    return base_env | {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.url,
        "SITREP_CHANNEL": CHANNEL,
        "PORT": str(free_port()),
        "TMPDIR": str(tmp_path / "tmp"),
    }


@pytest.mark.parametrize(
    ("how", "backend"),
    [("--sandbox", "statuspage"), ("SITREP_SANDBOX=1", "appfirst")],
    ids=["flag-statuspage-maintenance", "environment-appfirst-maintenance"],
)
def test_every_command_works_in_the_sandbox_and_says_so(sandbox_env, slack, tmp_path, how, backend):
    env = sandbox_env | {"MAINTENANCE_BACKEND": backend}
    if how == "SITREP_SANDBOX=1":
        env |= {"SITREP_SANDBOX": "1"}
        args: list[str] = []
    else:
        # A URL that answers nothing: the sandbox does not use it.
        env |= {"STATUSPAGE_URL": "http://127.0.0.1:9", "STATUSPAGE_API_KEY": "not-used"}
        args = [how]
    base = f"http://127.0.0.1:{env['PORT']}"
    process = start_sitrep(env, tmp_path, *args)
    try:
        wait_healthy(base, process)

        # Declare: the form offers the sandbox's components; the stand-in answers with a GUID.
        view = command_modal(base, slack, "/incident", "declare DB down")
        components = next(b for b in view["blocks"] if b.get("block_id") == IncidentBlock.COMPONENTS)
        assert [o["value"] for o in components["element"]["options"]] == [c.id for c in SANDBOX_COMPONENTS]
        submit(base, view, declare_values(components=(API,)))
        [announcement] = slack.wait_for(lambda: parents(slack))
        assert marked_as_sandbox(announcement["text"], announcement["blocks"])
        assert "DB down" in announcement["text"] and "Status page ID `" in json.dumps(announcement["blocks"])
        assert "declared" in told(slack, 1)

        # Update: a reply in the thread, and the announcement edited, still marked.
        view = command_modal(base, slack, "/incident", "update 1")
        submit(base, view, update_values(1))
        slack.wait_for(lambda: len(slack.thread(CHANNEL, announcement["ts"])) >= 1)
        assert "Identified" in json.dumps(slack.thread(CHANNEL, announcement["ts"])[0]["blocks"])
        edit = slack.wait_for(
            lambda: [c for c in slack.calls_to("chat.update") if "Identified" in json.dumps(c["blocks"])], timeout=15
        )[-1]
        assert marked_as_sandbox(edit["text"], json.loads(edit["blocks"]) if isinstance(edit["blocks"], str) else edit["blocks"])

        # Resolve.
        view = command_modal(base, slack, "/incident", "resolve 1")
        submit(base, view, resolve_values(1))
        slack.wait_for(lambda: len(slack.thread(CHANNEL, announcement["ts"])) >= 2)
        assert "Resolved" in json.dumps(slack.thread(CHANNEL, announcement["ts"])[1]["blocks"])

        # Schedule a window on the chosen backend's stand-in, two days from now.
        start = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
        view = command_modal(base, slack, "/maintenance", "schedule DB upgrade")
        if backend == "statuspage":
            values = schedule_values(start=start, end=start + timedelta(hours=2), components=[API])
        else:
            values = schedule_values(description=None, start=start, end=start + timedelta(hours=2), servers="1, 2, 3")
        submit(base, view, values)
        window = slack.wait_for(lambda: parents(slack)[1:])[0]
        assert marked_as_sandbox(window["text"], window["blocks"])
        assert "DB upgrade" in window["text"]
        answers = slack.wait_for(lambda: [m for m in slack.ephemerals() if "scheduled" in m["text"]])
        if backend == "appfirst":
            # The stand-in keeps other times than it is sent, as seed 003's server does.
            assert "stored the window as" in json.dumps(answers[-1]["blocks"])

        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=40)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert "Traceback" not in output and "FAILED" not in output
    assert "sandbox: the status page and AppFirst are stand-ins at http://127.0.0.1:" in output
    assert list((tmp_path / "tmp").iterdir()) == []  # the throwaway database is gone with it
    assert not (tmp_path / "sitrep.db").exists()  # DATABASE_URL was not used


@pytest.mark.parametrize("how", ["--sandbox", "SITREP_SANDBOX=1"])
def test_check_says_sandbox_and_reaches_the_stand_ins(sandbox_env, tmp_path, how):
    env, args = (sandbox_env, ["--sandbox"]) if how == "--sandbox" else (sandbox_env | {"SITREP_SANDBOX": "1"}, [])
    result = sitrep("check", *args, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines_starting(result.stdout, "sandbox: on")
    (status_page,) = lines_starting(result.stdout, "status page:")
    assert status_page.startswith("status page: ok (sandbox stand-in, http://127.0.0.1:")
    assert status_page.endswith("/api/maintenance/status)")
    (appfirst,) = lines_starting(result.stdout, "appfirst:")
    assert appfirst.startswith("appfirst: ok (sandbox stand-in, http://127.0.0.1:")
    assert lines_starting(result.stdout, "database: ok") and lines_starting(result.stdout, "slack: ok")
    assert lines_starting(result.stdout, "maintenance backend: statuspage")
    assert not lines_starting(result.stdout, "incidents: disabled")


def test_without_the_sandbox_check_still_says_what_is_not_configured(sandbox_env, tmp_path):
    result = sitrep("check", env=sandbox_env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not lines_starting(result.stdout, "sandbox:")
    assert lines_starting(result.stdout, "status page: not configured")


def test_run_help_describes_the_sandbox(base_env, tmp_path):
    result = sitrep("run", "--help", env=base_env, cwd=tmp_path)
    assert result.returncode == 0
    assert "--sandbox" in result.stdout and "SITREP_SANDBOX=1" in result.stdout
