"""Configuration: read once at start-up into one `Settings` object that is passed down.

The variable names are the contract in SPEC.md. A bad value must stop start-up with one
line naming the variable, never with a traceback and never echoing a secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


@dataclass(frozen=True)
class Component:
    """A status-page component people can mark as affected."""

    name: str
    id: str


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class DigestSchedule:
    """When the weekly digest is posted: a weekday (0 = Monday) and a wall-clock time in a
    time zone, so 09:00 stays 09:00 across a daylight-saving change."""

    weekday: int
    at: time
    zone: str

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    def __str__(self) -> str:
        return f"{WEEKDAYS[self.weekday]} {self.at:%H:%M} {self.zone}"


_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_NUMBERS = {name: i for names in (WEEKDAYS, _FULL_DAYS) for i, name in enumerate(names)}
_DIGEST = re.compile(r"^([a-z]+)\s+(\d{1,2}):(\d{2})(?:\s+(\S+))?$", re.IGNORECASE)


def parse_digest_schedule(text: str) -> DigestSchedule | None:
    """`mon 09:00 Europe/Berlin` (the zone defaults to UTC; `monday` works too); None if not."""
    match = _DIGEST.match(text.strip())
    if match is None:
        return None
    day, hour, minute, zone = match.groups()
    weekday = _DAY_NUMBERS.get(day.lower())
    if weekday is None or int(hour) > 23 or int(minute) > 59:
        return None
    zone = zone or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return DigestSchedule(weekday=weekday, at=time(int(hour), int(minute)), zone=zone)


# What each variable is, used to turn a validation failure into one helpful line.
EXPECTED: dict[str, str] = {
    "SLACK_BOT_TOKEN": "a bot token starting with xoxb-",
    "SLACK_SIGNING_SECRET": "the app's signing secret (required unless SLACK_APP_TOKEN is set)",
    "SLACK_APP_TOKEN": "an app-level token starting with xapp-",
    "SLACK_API_URL": "an http(s) URL",
    "SITREP_CHANNEL": "a channel ID such as C0123456789",
    "STATUSPAGE_URL": "an http(s) URL",
    "STATUSPAGE_API_KEY": "the status page's X-API-KEY (required with STATUSPAGE_URL)",
    "APPFIRST_URL": "an http(s) URL",
    "APPFIRST_EMAIL": "the AppFirst account e-mail (required with APPFIRST_URL)",
    "APPFIRST_API_KEY": "the AppFirst API key (required with APPFIRST_URL)",
    "MAINTENANCE_BACKEND": "statuspage or appfirst, and that backend must be configured",
    "SITREP_COMPONENTS": "a list like Name=guid,Name=guid",
    "SITREP_REMINDER_LEAD": "a whole number of minutes, 0 or more",
    "SITREP_SYNC_INTERVAL": "a whole number of seconds, 10 or more",
    "SITREP_UPDATE_NUDGE": "a whole number of minutes, 0 (off) or more",
    "SITREP_CHANGE_LOOKBACK": "a whole number of minutes, 0 or more",
    "SITREP_OVERRUN_WARNING": "a whole number of minutes, 0 (off) or more",
    "SITREP_ANNOUNCE_HORIZON": "a whole number of days, 1 or more",
    "SITREP_INCIDENT_CHANNELS": "on or off",
    "SITREP_INCIDENT_CHANNEL_PRIVATE": "on or off",
    "SITREP_ARCHIVE_AFTER": "a whole number of hours, 0 (never) or more",
    "SITREP_ADMINS": "Slack user IDs separated by commas, such as U012,U034",
    "DATABASE_URL": "a SQLAlchemy URL such as sqlite:///sitrep.db",
    "PORT": "a port number between 1 and 65535",
    "SITREP_INCIDENT_STATUSES": (
        "the statuses your status page accepts, separated by commas (1 to 100, each at most 75 characters, "
        "without Resolved: resolving is its own action)"
    ),
    "SITREP_INCIDENT_IMPACTS": (
        "the impacts your status page accepts, separated by commas (1 to 100, each at most 75 characters)"
    ),
    "SITREP_DEFAULT_IMPACT": "one of SITREP_INCIDENT_IMPACTS, or empty for none preselected",
    "SITREP_NOTIFY_DEFAULT": "on or off",
    "SITREP_MAX_BODY": "a number of bytes, 65536 or more",
    "SITREP_SHUTDOWN_GRACE": "a number of seconds between 0 and 3600",
    "SITREP_DRAIN_DELAY": "a number of seconds between 0 and 3600",
    "LOG_LEVEL": "one of DEBUG, INFO, WARNING, ERROR",
    "LOG_FORMAT": "text or json",
    "METRICS_PORT": "a port number between 1 and 65535",
    "SITREP_SANDBOX": "1 or 0 (true or false)",
    "SITREP_DIGEST": "a weekday, a time and a time zone, such as mon 09:00 Europe/Berlin (unset: no digest)",
    "SITREP_TEST_SPEEDUP": "a whole number from 1 to 1000 (tests against a fake Slack only; 1 with Slack)",
}

# Seed 004 shows only `Investigating`, `Identified` and `Major Outage`; the rest are the
# usual status-page words. Operators set the lists their status page actually accepts.
DEFAULT_INCIDENT_STATUSES = ("Investigating", "Identified", "Monitoring")
DEFAULT_INCIDENT_IMPACTS = ("Degraded Performance", "Partial Outage", "Major Outage")
VOCABULARY_MAX_VALUES = 100  # options in one Slack select
VOCABULARY_MAX_LENGTH = 75  # characters of one option's text

_URL = re.compile(r"^https?://[^\s/]+", re.IGNORECASE)
_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")


class SettingsError(Exception):
    """One line per bad variable for the operator: which, and what was expected. Every
    problem of a run is in `lines` at once (three missing variables: one run, three lines);
    `variable` is the first one's."""

    def __init__(self, variable: str, problem: str, more: tuple[tuple[str, str], ...] = ()):
        self.variable = variable
        self.problems = ((variable, problem), *more)
        # A problem written as a whole sentence (a full stop at its end) says what to do itself.
        self.lines = [
            f"{v} {p}" if p.endswith(".") else f"{v} {p}: expected {EXPECTED.get(v, 'a valid value')}." for v, p in self.problems
        ]
        super().__init__("\n".join(self.lines))


class _FieldProblem(ValueError):
    """Raised by validators so the error names a variable without echoing its value."""

    def __init__(self, variable: str, problem: str = "is not valid"):
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable} {problem}")


class _Problems(ValueError):
    """Several `_FieldProblem`s of the cross-variable checks, raised together."""

    def __init__(self, problems: list[_FieldProblem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def _url(value: str | None, variable: str) -> str | None:
    if value in (None, ""):
        return None
    if not _URL.match(value):
        raise _FieldProblem(variable)
    return value


def _vocabulary(value: object, variable: str) -> tuple[str, ...]:
    """A comma-separated list of the words the status page accepts; each must fit a Slack option."""
    if isinstance(value, (tuple, list)):
        value = ",".join(str(v) for v in value)
    if not isinstance(value, str):
        raise _FieldProblem(variable)
    values = tuple(part.strip() for part in value.split(",") if part.strip())
    if not values:
        raise _FieldProblem(variable, "is empty")
    if len(values) > VOCABULARY_MAX_VALUES:
        raise _FieldProblem(variable, f"has more than {VOCABULARY_MAX_VALUES} values")
    if any(len(v) > VOCABULARY_MAX_LENGTH for v in values):
        raise _FieldProblem(variable, f"has a value longer than {VOCABULARY_MAX_LENGTH} characters")
    if len({v.casefold() for v in values}) != len(values):
        raise _FieldProblem(variable, "lists the same value twice")
    return values


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    slack_bot_token: SecretStr
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    sitrep_channel: str
    statuspage_url: str | None = None
    statuspage_api_key: SecretStr | None = None
    appfirst_url: str | None = None
    appfirst_email: str | None = None
    appfirst_api_key: SecretStr | None = None
    maintenance_backend: Literal["statuspage", "appfirst"] | None = None
    sitrep_components: Annotated[tuple[Component, ...], NoDecode] = ()
    sitrep_reminder_lead: int = Field(default=15, ge=0, le=7 * 24 * 60)
    sitrep_sync_interval: int = Field(default=300, ge=10)
    #: Minutes without an update before an open incident is nudged in its thread; 0 = off.
    sitrep_update_nudge: int = Field(default=30, ge=0, le=7 * 24 * 60)
    #: Minutes after a window ended during which a declared incident still names it as overlapping.
    sitrep_change_lookback: int = Field(default=60, ge=0, le=7 * 24 * 60)
    #: Minutes before a running window's end to ask "still working?"; 0 = off.
    sitrep_overrun_warning: int = Field(default=10, ge=0, le=7 * 24 * 60)
    #: Days ahead a window made elsewhere is announced; later ones wait, stored, until they enter it.
    sitrep_announce_horizon: int = Field(default=7, ge=1, le=10 * 366)
    #: A channel of its own per incident (`#inc-<number>-<slug>`), as well as SITREP_CHANNEL.
    sitrep_incident_channels: bool = False
    #: Those channels private (needs groups:write) rather than public (channels:manage).
    sitrep_incident_channel_private: bool = False
    #: Hours after the resolution that an incident's own channel is archived; 0 = never.
    sitrep_archive_after: int = Field(default=24, ge=0, le=366 * 24)
    sitrep_admins: Annotated[frozenset[str], NoDecode] = frozenset()
    database_url: str = "sqlite:///sitrep.db"
    port: int = Field(default=3000, ge=1, le=65535)
    sitrep_incident_statuses: Annotated[tuple[str, ...], NoDecode] = DEFAULT_INCIDENT_STATUSES
    sitrep_incident_impacts: Annotated[tuple[str, ...], NoDecode] = DEFAULT_INCIDENT_IMPACTS
    #: The impact the declare form preselects; None: the person picks (a hasty Declare must
    #: not announce a major outage nobody chose).
    sitrep_default_impact: str | None = None
    #: Whether the declare form's "notify subscribers" starts ticked.
    sitrep_notify_default: bool = False
    # Larger request bodies are refused (413) before they are read; Slack's are far smaller.
    sitrep_max_body: int = Field(default=1024 * 1024, ge=64 * 1024)
    # On SIGTERM, how long work under way may take to finish before clients and store close.
    sitrep_shutdown_grace: float = Field(default=25.0, ge=0, le=3600)
    # On SIGTERM, how long Slack requests are still served after /readyz fails: the time a
    # load balancer takes to stop sending to this replica. Then the listener closes.
    sitrep_drain_delay: float = Field(default=10.0, ge=0, le=3600)
    # Seconds between heartbeats; an instance silent for three is gone, and the drafts it was
    # sending become "outcome unknown" (their people are told).
    sitrep_heartbeat: float = Field(default=10.0, ge=0.5, le=600)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    # Socket Mode has no HTTP server of its own: /metrics, /healthz and /readyz live here.
    metrics_port: int = Field(default=9090, ge=1, le=65535)
    #: When the weekly digest is posted in SITREP_CHANNEL; None: never (`/incident digest` still answers).
    sitrep_digest: Annotated[DigestSchedule | None, NoDecode] = None
    #: Stand-ins for the status page and AppFirst inside the process (`sitrep run --sandbox`).
    sitrep_sandbox: bool = False
    #: A test hook, never for Slack itself: the channel pacing runs this many times faster and
    #: a dead replica's reminder claim is taken over this many times sooner, for end-to-end
    #: tests of real processes on real time against a fake Slack paced as much faster.
    #: At 1 (the default) nothing changes.
    sitrep_test_speedup: int = Field(default=1, ge=1, le=1000)

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().startswith("xoxb-"):
            raise _FieldProblem("SLACK_BOT_TOKEN")
        return v

    @field_validator("slack_app_token")
    @classmethod
    def _app_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            return None
        if not v.get_secret_value().startswith("xapp-"):
            raise _FieldProblem("SLACK_APP_TOKEN")
        return v

    @field_validator("slack_signing_secret", "statuspage_api_key", "appfirst_api_key")
    @classmethod
    def _empty_secret_is_unset(cls, v: SecretStr | None) -> SecretStr | None:
        return v if v is not None and v.get_secret_value() else None

    @field_validator("slack_api_url")
    @classmethod
    def _slack_url(cls, v: str) -> str:
        v = _url(v, "SLACK_API_URL") or "https://slack.com/api/"
        return v if v.endswith("/") else v + "/"

    @field_validator("statuspage_url")
    @classmethod
    def _sp_url(cls, v: str | None) -> str | None:
        return _url(v, "STATUSPAGE_URL")

    @field_validator("appfirst_url")
    @classmethod
    def _af_url(cls, v: str | None) -> str | None:
        return _url(v, "APPFIRST_URL")

    @field_validator("appfirst_email")
    @classmethod
    def _af_email(cls, v: str | None) -> str | None:
        return v or None

    @field_validator("maintenance_backend", mode="before")
    @classmethod
    def _backend(cls, v: object) -> object:
        if isinstance(v, str):
            v = v.strip().lower() or None
        return v

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _log_word(cls, v: object, info) -> object:
        if not isinstance(v, str):
            return v
        return v.strip().upper() if info.field_name == "log_level" else v.strip().lower()

    @field_validator("sitrep_channel")
    @classmethod
    def _channel(cls, v: str) -> str:
        v = v.strip()
        if not _CHANNEL.match(v):
            raise _FieldProblem("SITREP_CHANNEL")
        return v

    @field_validator("sitrep_components", mode="before")
    @classmethod
    def _components(cls, v: object) -> tuple[Component, ...]:
        if isinstance(v, tuple):
            return v
        if not isinstance(v, str):
            raise _FieldProblem("SITREP_COMPONENTS")
        components: list[Component] = []
        for item in filter(None, (part.strip() for part in v.split(","))):
            name, sep, guid = item.rpartition("=")
            if not sep or not name.strip() or not guid.strip():
                raise _FieldProblem("SITREP_COMPONENTS")
            components.append(Component(name=name.strip(), id=guid.strip()))
        if len({c.id for c in components}) != len(components):
            raise _FieldProblem("SITREP_COMPONENTS", "lists the same component twice")
        return tuple(components)

    @field_validator("sitrep_digest", mode="before")
    @classmethod
    def _digest(cls, v: object) -> DigestSchedule | None:
        if v is None or isinstance(v, DigestSchedule):
            return v
        if not isinstance(v, str):
            raise _FieldProblem("SITREP_DIGEST")
        if not v.strip():
            return None
        schedule = parse_digest_schedule(v)
        if schedule is None:
            raise _FieldProblem("SITREP_DIGEST")
        return schedule

    @field_validator("sitrep_admins", mode="before")
    @classmethod
    def _admins(cls, v: object) -> frozenset[str]:
        if isinstance(v, (set, frozenset)):
            return frozenset(v)
        if not isinstance(v, str):
            raise _FieldProblem("SITREP_ADMINS")
        admins = {part.strip() for part in v.split(",") if part.strip()}
        if any(not _USER.match(a) for a in admins):
            raise _FieldProblem("SITREP_ADMINS")
        return frozenset(admins)

    @field_validator("sitrep_incident_statuses", mode="before")
    @classmethod
    def _statuses(cls, v: object) -> tuple[str, ...]:
        values = _vocabulary(v, "SITREP_INCIDENT_STATUSES")
        if any(value.casefold() == "resolved" for value in values):
            raise _FieldProblem("SITREP_INCIDENT_STATUSES", "lists Resolved")
        return values

    @field_validator("sitrep_incident_impacts", mode="before")
    @classmethod
    def _impacts(cls, v: object) -> tuple[str, ...]:
        return _vocabulary(v, "SITREP_INCIDENT_IMPACTS")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str) -> str:
        if "://" not in v:
            raise _FieldProblem("DATABASE_URL")
        if v.split("://", 1)[0].split("+", 1)[0].lower() in ("postgres", "postgresql"):
            # The libpq query parameters (`?sslmode=…`) are read with the other settings, so
            # one sitrep can honour is listed with every other problem of the run.
            from sqlalchemy.engine import make_url  # noqa: PLC0415 - only for a PostgreSQL URL (start-up cost)
            from sqlalchemy.exc import ArgumentError  # noqa: PLC0415 - (same reason)

            from store.libpq import ParameterRefused, driver_arguments  # noqa: PLC0415 - (same reason)

            try:
                driver_arguments(make_url(v))
            except ArgumentError:
                raise _FieldProblem("DATABASE_URL") from None
            except ParameterRefused as exc:
                raise _FieldProblem("DATABASE_URL", f"{exc}.") from None
        return v

    @field_validator("sitrep_default_impact")
    @classmethod
    def _default_impact(cls, v: str | None) -> str | None:
        return (v or "").strip() or None

    @model_validator(mode="wrap")
    @classmethod
    def _every_problem(cls, data: object, handler):
        """Every bad variable of the run at once: pydantic stops before the checks across
        variables when a single one fails, so the checks that need only the raw values
        (which secrets are set) are added here."""
        try:
            return handler(data)
        except ValidationError as exc:
            found = [
                _FieldProblem(v, p)
                for error in exc.errors(include_input=False, include_url=False)
                for v, p in _problems_of(error)
            ]
            named = {p.variable for p in found}
            if isinstance(data, dict):
                found += [p for p in _raw_inconsistencies(data) if p.variable not in named]
            raise _Problems(found) from None

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        """The checks across variables, every failing one reported together."""
        problems = list(self._inconsistencies())
        if problems:
            raise _Problems(problems)
        return self

    def _inconsistencies(self):
        if self.slack_app_token is None and self.slack_signing_secret is None:
            yield _FieldProblem("SLACK_SIGNING_SECRET", "is required in HTTP mode")
        impacts = {i.casefold(): i for i in self.sitrep_incident_impacts}
        if self.sitrep_default_impact is not None:
            if self.sitrep_default_impact.casefold() not in impacts:
                yield _FieldProblem("SITREP_DEFAULT_IMPACT", "is not one of SITREP_INCIDENT_IMPACTS")
            else:
                self.sitrep_default_impact = impacts[self.sitrep_default_impact.casefold()]
        if self.sitrep_sandbox:
            # The stand-ins take the place of both APIs (bot/sandbox): their URLs and keys are
            # set when they start, and whatever the environment says for them is not used.
            self.maintenance_backend = self.maintenance_backend or "statuspage"
            return
        if self.statuspage_url and self.statuspage_api_key is None:
            yield _FieldProblem("STATUSPAGE_API_KEY", "is required with STATUSPAGE_URL")
        if self.appfirst_url and self.appfirst_email is None:
            yield _FieldProblem("APPFIRST_EMAIL", "is required with APPFIRST_URL")
        if self.appfirst_url and self.appfirst_api_key is None:
            yield _FieldProblem("APPFIRST_API_KEY", "is required with APPFIRST_URL")
        if self.maintenance_backend is None:
            only_appfirst = self.appfirst_url and not self.statuspage_url
            self.maintenance_backend = "appfirst" if only_appfirst else "statuspage"
        elif self.maintenance_backend == "appfirst" and not self.appfirst_url:
            yield _FieldProblem("MAINTENANCE_BACKEND", "is appfirst but APPFIRST_URL is not set")
        elif self.maintenance_backend == "statuspage" and not self.statuspage_url and self.appfirst_url:
            yield _FieldProblem("MAINTENANCE_BACKEND", "is statuspage but STATUSPAGE_URL is not set")

    # --- derived, so callers never re-parse -------------------------------------------
    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    @property
    def incidents_enabled(self) -> bool:
        return self.statuspage_url is not None

    @property
    def maintenance_enabled(self) -> bool:
        if self.maintenance_backend == "appfirst":
            return self.appfirst_url is not None
        return self.statuspage_url is not None

    def component_names(self, ids: list[str] | tuple[str, ...]) -> list[str]:
        by_id = {c.id: c.name for c in self.sitrep_components}
        return [by_id.get(i, i) for i in ids]

    def is_admin(self, user_id: str) -> bool:
        return not self.sitrep_admins or user_id in self.sitrep_admins

    def secret_values(self) -> list[str]:
        """Every secret sitrep holds (Slack's tokens and signing secret, both API keys): kept
        out of log lines and out of any upstream's text shown or logged."""
        values = [self.slack_bot_token, self.slack_signing_secret, self.slack_app_token]
        values += [self.statuspage_api_key, self.appfirst_api_key]
        return [v.get_secret_value() for v in values if v is not None]


class MigrateSettings(BaseSettings):
    """What `sitrep migrate` needs: the database, and how to log. Read on its own so a deploy
    step (or an init container) can upgrade the schema without the Slack secrets."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str = "sqlite:///sitrep.db"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    _database_url = field_validator("database_url")(Settings._database_url.__func__)
    _log_word = field_validator("log_level", "log_format", mode="before")(Settings._log_word.__func__)


def load_settings(**overrides: object) -> Settings:
    """Read the environment (and `.env`) once; raise `SettingsError` naming one variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise _to_settings_error(exc) from None


def load_migrate_settings(**overrides: object) -> MigrateSettings:
    """Only `DATABASE_URL` and the log settings: `sitrep migrate` needs nothing else."""
    try:
        return MigrateSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise _to_settings_error(exc) from None


def _to_settings_error(exc: ValidationError) -> SettingsError:
    """Every failed variable of the run, one (variable, problem) each, in the order read."""
    found: list[tuple[str, str]] = []
    for error in exc.errors(include_input=False, include_url=False):
        for variable, problem in _problems_of(error):
            if variable not in (v for v, _ in found):
                found.append((variable, problem))
    return SettingsError(*found[0], more=tuple(found[1:]))


def _raw_inconsistencies(data: dict):
    """The secrets-present checks of `Settings._inconsistencies`, on the values as read."""

    def given(name: str) -> bool:
        value = data.get(name)
        return bool(value.get_secret_value() if isinstance(value, SecretStr) else value)

    if not given("slack_app_token") and not given("slack_signing_secret"):
        yield _FieldProblem("SLACK_SIGNING_SECRET", "is required in HTTP mode")
    if str(data.get("sitrep_sandbox", "")).strip().lower() in ("1", "true", "on", "yes"):
        return
    if given("statuspage_url") and not given("statuspage_api_key"):
        yield _FieldProblem("STATUSPAGE_API_KEY", "is required with STATUSPAGE_URL")
    if given("appfirst_url") and not given("appfirst_email"):
        yield _FieldProblem("APPFIRST_EMAIL", "is required with APPFIRST_URL")
    if given("appfirst_url") and not given("appfirst_api_key"):
        yield _FieldProblem("APPFIRST_API_KEY", "is required with APPFIRST_URL")


def _problems_of(error) -> list[tuple[str, str]]:
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _Problems):
        return [(p.variable, p.problem) for p in cause.problems]
    if isinstance(cause, _FieldProblem):
        return [(cause.variable, cause.problem)]
    variable = str(error["loc"][0]).upper() if error.get("loc") else "configuration"
    return [(variable, "is required" if error.get("type") == "missing" else "is not valid")]
