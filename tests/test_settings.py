"""Settings: SPEC's variables, read from the environment or `.env`, and one clear line naming
the variable when one is missing or malformed — never echoing a secret."""

from __future__ import annotations

import pytest

from bot.settings import Component, SettingsError, load_settings
from tests.support.process import SPEC_VARIABLES

MINIMAL = {
    "SLACK_BOT_TOKEN": "xoxb-1-good-token",
    "SLACK_SIGNING_SECRET": "signing-secret-value",
    "SITREP_CHANNEL": "C0123456789",
}
STATUSPAGE = {"STATUSPAGE_URL": "https://status.example.com/api", "STATUSPAGE_API_KEY": "sp-key-value"}
APPFIRST = {
    "APPFIRST_URL": "https://appfirst.example.com/api",
    "APPFIRST_EMAIL": "ops@example.com",
    "APPFIRST_API_KEY": "af-key-value",
}


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean slate: no SPEC variable set, and a working directory without a `.env`."""
    for name in SPEC_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


def error_for() -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        load_settings()
    return caught.value


def assert_one_line_naming(err: SettingsError, variable: str) -> str:
    message = str(err)
    assert err.variable == variable, message
    assert message.startswith(variable), message
    assert "\n" not in message
    assert "expected" in message
    return message


# --- required ---------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["SLACK_BOT_TOKEN", "SITREP_CHANNEL", "SLACK_SIGNING_SECRET"])
def test_each_required_variable_missing_is_named(env, missing):
    env(**{k: v for k, v in MINIMAL.items() if k != missing})
    message = assert_one_line_naming(error_for(), missing)
    assert "required" in message


def test_nothing_set_names_a_required_variable(env):
    err = error_for()
    assert err.variable in ("SLACK_BOT_TOKEN", "SITREP_CHANNEL", "SLACK_SIGNING_SECRET")


def test_empty_signing_secret_counts_as_missing_in_http_mode(env):
    env(**{**MINIMAL, "SLACK_SIGNING_SECRET": ""})
    assert_one_line_naming(error_for(), "SLACK_SIGNING_SECRET")


def test_socket_mode_needs_no_signing_secret(env):
    env(**{k: v for k, v in MINIMAL.items() if k != "SLACK_SIGNING_SECRET"}, SLACK_APP_TOKEN="xapp-1-app-token")
    settings = load_settings()
    assert settings.socket_mode
    assert settings.slack_signing_secret is None


# --- malformed ----------------------------------------------------------------------------------

MALFORMED = [
    ({"SLACK_BOT_TOKEN": "xoxp-user-token"}, "SLACK_BOT_TOKEN"),
    ({"SLACK_APP_TOKEN": "xoxb-not-an-app-token"}, "SLACK_APP_TOKEN"),
    ({"SLACK_API_URL": "slack.com/api"}, "SLACK_API_URL"),
    ({"SITREP_CHANNEL": "#general"}, "SITREP_CHANNEL"),
    ({"SITREP_CHANNEL": "U0123456789"}, "SITREP_CHANNEL"),
    ({"SITREP_COMPONENTS": "API"}, "SITREP_COMPONENTS"),
    ({"SITREP_COMPONENTS": "API=,Website=abc"}, "SITREP_COMPONENTS"),
    ({"SITREP_COMPONENTS": "API=abc,Website=abc"}, "SITREP_COMPONENTS"),
    ({"PORT": "http"}, "PORT"),
    ({"PORT": "0"}, "PORT"),
    ({"PORT": "70000"}, "PORT"),
    ({"SITREP_REMINDER_LEAD": "-5"}, "SITREP_REMINDER_LEAD"),
    ({"SITREP_REMINDER_LEAD": "soon"}, "SITREP_REMINDER_LEAD"),
    ({"SITREP_SYNC_INTERVAL": "1"}, "SITREP_SYNC_INTERVAL"),
    ({"STATUSPAGE_URL": "status.example.com", "STATUSPAGE_API_KEY": "k"}, "STATUSPAGE_URL"),
    ({"STATUSPAGE_URL": "https://status.example.com"}, "STATUSPAGE_API_KEY"),
    ({"APPFIRST_URL": "https://af.example.com", "APPFIRST_API_KEY": "k"}, "APPFIRST_EMAIL"),
    ({"APPFIRST_URL": "https://af.example.com", "APPFIRST_EMAIL": "ops@example.com"}, "APPFIRST_API_KEY"),
    ({"MAINTENANCE_BACKEND": "appfirst", **STATUSPAGE}, "MAINTENANCE_BACKEND"),
    ({"MAINTENANCE_BACKEND": "pagerduty", **STATUSPAGE}, "MAINTENANCE_BACKEND"),
    ({"MAINTENANCE_BACKEND": "statuspage", **APPFIRST}, "MAINTENANCE_BACKEND"),
    ({"SITREP_ADMINS": "alice,bob"}, "SITREP_ADMINS"),
    ({"SITREP_ADMINS": "U0ALICE;U0BOB"}, "SITREP_ADMINS"),
    ({"DATABASE_URL": "sitrep.db"}, "DATABASE_URL"),
    ({"SITREP_INCIDENT_STATUSES": " , ,"}, "SITREP_INCIDENT_STATUSES"),
    ({"SITREP_INCIDENT_STATUSES": "Investigating,Resolved"}, "SITREP_INCIDENT_STATUSES"),
    ({"SITREP_INCIDENT_STATUSES": "Open,open"}, "SITREP_INCIDENT_STATUSES"),
    ({"SITREP_INCIDENT_STATUSES": "Open," + "x" * 76}, "SITREP_INCIDENT_STATUSES"),
    ({"SITREP_INCIDENT_IMPACTS": ""}, "SITREP_INCIDENT_IMPACTS"),
    ({"SITREP_INCIDENT_IMPACTS": ",".join(f"Impact {n}" for n in range(101))}, "SITREP_INCIDENT_IMPACTS"),
    ({"SITREP_MAX_BODY": "1MB"}, "SITREP_MAX_BODY"),
    ({"SITREP_MAX_BODY": "1000"}, "SITREP_MAX_BODY"),
]


@pytest.mark.parametrize(("values", "variable"), MALFORMED, ids=[f"{v}-{i}" for i, (_, v) in enumerate(MALFORMED)])
def test_malformed_value_is_named(env, values, variable):
    env(**{**MINIMAL, **values})
    assert_one_line_naming(error_for(), variable)


SECRET_CASES = [
    ("SLACK_BOT_TOKEN", "badsecret123"),
    ("SLACK_APP_TOKEN", "badsecret123"),
]


@pytest.mark.parametrize(("variable", "value"), SECRET_CASES)
def test_error_never_echoes_the_secret(env, variable, value):
    env(**{**MINIMAL, variable: value})
    err = error_for()
    assert err.variable == variable
    assert value not in str(err)
    assert value not in repr(err)
    assert value not in str(err.__cause__ or "") and err.__suppress_context__


def test_no_secret_of_a_good_configuration_leaks_into_another_variables_error(env):
    env(**MINIMAL, **STATUSPAGE, APPFIRST_URL="https://af.example.com", APPFIRST_API_KEY="af-key-value")
    message = str(error_for())
    for secret in ("xoxb-1-good-token", "signing-secret-value", "sp-key-value", "af-key-value"):
        assert secret not in message


# --- defaults and parsing -----------------------------------------------------------------------


def test_defaults(env):
    env(**MINIMAL)
    s = load_settings()
    assert s.slack_api_url == "https://slack.com/api/"
    assert s.slack_app_token is None and not s.socket_mode
    assert s.statuspage_url is None and not s.incidents_enabled
    assert s.appfirst_url is None
    assert s.maintenance_backend == "statuspage" and not s.maintenance_enabled
    assert s.sitrep_components == ()
    assert s.sitrep_reminder_lead == 15
    assert s.sitrep_sync_interval == 300
    assert s.sitrep_admins == frozenset() and s.is_admin("U0ANYONE")
    assert s.database_url == "sqlite:///sitrep.db"
    assert s.port == 3000
    assert s.sitrep_incident_statuses == ("Investigating", "Identified", "Monitoring")
    assert s.sitrep_incident_impacts == ("Degraded Performance", "Partial Outage", "Major Outage")
    assert s.sitrep_max_body == 1048576


def test_backend_defaults_to_appfirst_when_only_it_is_configured(env):
    env(**MINIMAL, **APPFIRST)
    s = load_settings()
    assert s.maintenance_backend == "appfirst" and s.maintenance_enabled
    assert not s.incidents_enabled


def test_backend_defaults_to_statuspage_when_both_are_configured(env):
    env(**MINIMAL, **STATUSPAGE, **APPFIRST)
    s = load_settings()
    assert s.maintenance_backend == "statuspage"
    assert s.incidents_enabled and s.maintenance_enabled


def test_backend_can_be_chosen(env):
    env(**MINIMAL, **STATUSPAGE, **APPFIRST, MAINTENANCE_BACKEND="AppFirst")
    assert load_settings().maintenance_backend == "appfirst"


def test_values_are_parsed(env):
    env(
        **MINIMAL,
        SLACK_API_URL="http://127.0.0.1:9999/api",
        SITREP_COMPONENTS="API=3fa85f64-0001, Web site = 3fa85f64-0002 ,",
        SITREP_ADMINS="U0ALICE, W0BOB",
        SITREP_REMINDER_LEAD="0",
        SITREP_SYNC_INTERVAL="60",
        PORT="8080",
        DATABASE_URL="postgresql+asyncpg://sitrep@db/sitrep",
    )
    s = load_settings()
    assert s.slack_api_url == "http://127.0.0.1:9999/api/"
    assert s.sitrep_components == (Component("API", "3fa85f64-0001"), Component("Web site", "3fa85f64-0002"))
    assert s.sitrep_admins == {"U0ALICE", "W0BOB"}
    assert s.is_admin("U0ALICE") and not s.is_admin("U0MALLORY")
    assert s.sitrep_reminder_lead == 0
    assert s.sitrep_sync_interval == 60
    assert s.port == 8080
    assert s.database_url == "postgresql+asyncpg://sitrep@db/sitrep"


def test_incident_vocabulary_is_the_status_pages_own(env):
    env(
        **MINIMAL,
        SITREP_INCIDENT_STATUSES=" Investigating , Fix deployed,Watching ,",
        SITREP_INCIDENT_IMPACTS="None,Minor,Major,Critical",
    )
    s = load_settings()
    assert s.sitrep_incident_statuses == ("Investigating", "Fix deployed", "Watching")
    assert s.sitrep_incident_impacts == ("None", "Minor", "Major", "Critical")


def test_incident_vocabulary_limits_are_what_a_slack_select_holds(env):
    env(**MINIMAL, SITREP_INCIDENT_IMPACTS=",".join(f"{n:03d}" + "x" * 72 for n in range(100)))
    assert len(load_settings().sitrep_incident_impacts) == 100  # 100 values of 75 characters fit
    env(SITREP_INCIDENT_STATUSES="Investigating,Resolved")
    message = assert_one_line_naming(error_for(), "SITREP_INCIDENT_STATUSES")
    assert "Resolved" in message and "its own action" in message


def test_secrets_are_not_in_the_settings_repr(env):
    env(**MINIMAL, **STATUSPAGE, **APPFIRST)
    shown = repr(load_settings())
    for secret in ("xoxb-1-good-token", "signing-secret-value", "sp-key-value", "af-key-value"):
        assert secret not in shown


# --- .env -------------------------------------------------------------------------------------


def test_dot_env_in_the_working_directory_is_read(env, tmp_path):
    lines = [f"{k}={v}" for k, v in {**MINIMAL, **STATUSPAGE, "PORT": "4000"}.items()]
    (tmp_path / ".env").write_text("# sitrep\n" + "\n".join(lines) + "\n", encoding="utf-8")
    s = load_settings()
    assert s.slack_bot_token.get_secret_value() == "xoxb-1-good-token"
    assert s.sitrep_channel == "C0123456789"
    assert s.statuspage_url == "https://status.example.com/api"
    assert s.port == 4000


def test_environment_wins_over_dot_env(env, tmp_path):
    (tmp_path / ".env").write_text("\n".join(f"{k}={v}" for k, v in MINIMAL.items()) + "\nPORT=4000\n", encoding="utf-8")
    env(PORT="5000")
    assert load_settings().port == 5000


def test_dot_env_errors_name_the_variable_too(env, tmp_path):
    (tmp_path / ".env").write_text(
        "SLACK_BOT_TOKEN=badsecret123\nSLACK_SIGNING_SECRET=s\nSITREP_CHANNEL=C0123456789\n", encoding="utf-8"
    )
    err = error_for()
    assert err.variable == "SLACK_BOT_TOKEN"
    assert "badsecret123" not in str(err)


# --- the documented settings are exactly SPEC's -------------------------------------------------

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_settings_reference_lists_exactly_the_spec_variables():
    import re

    text = (REPO / "docs" / "settings.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if re.match(r"^\| `[A-Z_]+`", line)]
    documented = [name for row in rows for name in re.findall(r"`([A-Z][A-Z_]+)`", row.split("|")[1])]
    assert sorted(documented) == sorted(SPEC_VARIABLES)


def test_env_example_is_loadable_and_names_only_spec_variables(env, tmp_path):
    import re
    import shutil

    text = (REPO / ".env.example").read_text(encoding="utf-8")
    named = set(re.findall(r"^#?\s*([A-Z][A-Z_]+)=", text, flags=re.MULTILINE))
    # POSTGRES_PASSWORD is compose.yml's (its database's password), not sitrep's.
    assert named - {"POSTGRES_PASSWORD"} == set(SPEC_VARIABLES)
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    s = load_settings()  # the placeholders are well-formed, so copying it is a working start
    assert s.incidents_enabled


# --- every problem of a run at once -----------------------------------------------------------


def test_every_missing_variable_is_listed_in_one_run(env):
    """Three missing variables: one run, three lines (not three runs of one line each)."""
    err = error_for()
    named = [variable for variable, _ in err.problems]
    assert set(named) >= {"SLACK_BOT_TOKEN", "SITREP_CHANNEL"}, err.lines
    assert len(err.lines) == len(named) == len(str(err).splitlines())
    assert all(line.startswith(tuple(named)) and "expected" in line for line in err.lines)


def test_malformed_and_missing_variables_are_listed_together(env):
    env(SLACK_BOT_TOKEN="not-a-bot-token", PORT="seventy", SLACK_SIGNING_SECRET="s")
    err = error_for()
    assert [v for v, _ in err.problems] == ["SLACK_BOT_TOKEN", "SITREP_CHANNEL", "PORT"], err.lines
    assert "not-a-bot-token" not in str(err)


def test_checks_across_variables_are_listed_together(env):
    env(
        **{k: v for k, v in MINIMAL.items() if k != "SLACK_SIGNING_SECRET"},
        STATUSPAGE_URL="https://status.example.com",
        APPFIRST_URL="https://appfirst.example.com",
    )
    named = [v for v, _ in error_for().problems]
    assert named == ["SLACK_SIGNING_SECRET", "STATUSPAGE_API_KEY", "APPFIRST_EMAIL", "APPFIRST_API_KEY"]


# --- the declare form's defaults --------------------------------------------------------------


def test_declare_defaults_preselect_nothing(env):
    env(**MINIMAL)
    settings = load_settings()
    assert settings.sitrep_default_impact is None and settings.sitrep_notify_default is False


def test_declare_defaults_can_be_set(env):
    env(**MINIMAL, SITREP_DEFAULT_IMPACT="partial outage", SITREP_NOTIFY_DEFAULT="on")
    settings = load_settings()
    # Written as the status page spells it, whatever case the operator used.
    assert settings.sitrep_default_impact == "Partial Outage" and settings.sitrep_notify_default is True


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"SITREP_DEFAULT_IMPACT": "Apocalypse"}, "SITREP_DEFAULT_IMPACT"),
        ({"SITREP_INCIDENT_IMPACTS": "Minor,Major", "SITREP_DEFAULT_IMPACT": "Major Outage"}, "SITREP_DEFAULT_IMPACT"),
        ({"SITREP_NOTIFY_DEFAULT": "sometimes"}, "SITREP_NOTIFY_DEFAULT"),
    ],
)
def test_bad_declare_defaults_are_named(env, values, variable):
    env(**MINIMAL, **values)
    assert_one_line_naming(error_for(), variable)


def test_a_missing_signing_secret_is_listed_with_the_other_problems(env):
    env(SLACK_BOT_TOKEN="xoxb-1-good-token", PORT="seventy")
    assert [v for v, _ in error_for().problems] == ["SITREP_CHANNEL", "PORT", "SLACK_SIGNING_SECRET"]
