"""`sitrep run`, `sitrep check` and `sitrep --version`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
import sys

from bot.ops.logs import configure as configure_logs
from bot.settings import MigrateSettings, Settings, SettingsError, load_migrate_settings, load_settings

log = logging.getLogger("sitrep.cli")


def _url_password(database_url: str) -> list[str]:
    """The password in `DATABASE_URL`, kept out of every log line like the other secrets."""
    from sqlalchemy.engine import make_url  # loaded when used (start-up cost)
    from sqlalchemy.exc import ArgumentError  # (same reason)

    try:
        password = make_url(database_url).password
    except ArgumentError:
        return []
    return [str(password)] if password else []


def configure_logging(settings: Settings) -> None:
    """LOG_LEVEL and LOG_FORMAT, every line through the redaction filter (bot/ops/logs.py)."""
    configure_logs(level=settings.log_level, fmt=settings.log_format, secrets=settings.secret_values())


#: Every exit code `sitrep` uses (docs/operating.md lists them; tests/test_cli.py checks them).
EXIT_OK = 0
#: run: Slack refused a token, or the bot token lacks scopes; check: a service failed, or the
#: schema is behind this version.
EXIT_REFUSED = 1
#: A setting is missing or malformed, DATABASE_URL cannot be used, or the command line is
#: wrong (argparse's own code for a usage error).
EXIT_SETTINGS = 2


class Unusable(Exception):
    """A setting that parsed but cannot work (a database that cannot be opened): exit 2."""


async def _run(settings: Settings) -> None:
    if not settings.sitrep_sandbox:
        await _serve(settings)
        return
    # Imported when used: only the sandbox needs the stand-ins.
    from bot.sandbox import Sandbox

    async with Sandbox() as sandbox:
        settings = sandbox.configure(settings)
        configure_logging(settings)  # the stand-ins' fresh keys are redacted too
        log.info(
            "sandbox: the status page and AppFirst are stand-ins at %s and %s, with a throwaway "
            "database; nothing reaches a real status page",
            settings.statuspage_url,
            settings.appfirst_url,
        )
        await _serve(settings)


async def _serve(settings: Settings) -> None:
    # Imported when used: `sitrep --help` and bad settings answer without loading the bot.
    from bot.app import Sitrep
    from bot.context import build_context  # loaded when used (start-up cost)
    from store.db import DatabaseUnusable  # loaded when used (start-up cost)

    try:
        ctx = build_context(settings)
    except DatabaseUnusable as exc:
        raise Unusable(f"DATABASE_URL {exc}.") from None
    try:
        # Slack first: a token Slack refuses stops start-up before the schema is touched.
        await _preflight(ctx)
        await ctx.db.prepare()  # before serving: a bad database stops start-up in one line
    except DatabaseUnusable as exc:
        await ctx.aclose()
        raise Unusable(f"DATABASE_URL {exc}.") from None
    except BaseException:
        await ctx.aclose()
        raise
    bot = Sitrep(ctx)
    # Everything loaded so far (the libraries, the app) lives as long as the process: out of
    # the garbage collector's full passes, which otherwise walk it all (~80 ms at 150,000
    # objects) in the middle of a sync or an ack. Collected first, so no garbage is kept.
    gc.collect()
    gc.freeze()
    if settings.socket_mode:
        await bot.serve_socket_mode()
    else:
        await bot.serve_http()


async def _preflight(ctx) -> None:
    """Before serving: a bot token Slack refuses, or one lacking scopes the enabled features
    need, stops start-up in one line (`BotTokenRefused`, `ScopesMissing`: exit 1); a bot not
    in SITREP_CHANNEL is one warning line (it still answers commands, and /readyz says so).
    Slack not answering is a warning too: Bolt asks again with the first request."""
    # Imported when used: `sitrep --help` and bad settings answer without loading the bot.
    from bot.slack.preflight import BotTokenRefused, ScopesMissing, check_channel, check_token

    settings = ctx.settings
    try:
        token = await check_token(ctx.slack)
        state = await check_channel(ctx.slack, settings.sitrep_channel, needed_scopes(settings), token.scopes)
    except BotTokenRefused:
        raise
    except Exception as exc:  # noqa: BLE001 - Slack unreachable now is not a reason to stay down
        log.warning("could not ask Slack about SLACK_BOT_TOKEN and SITREP_CHANNEL (%s); starting anyway", _slack_reason(exc))
        return
    if state.missing_scopes:
        raise ScopesMissing(list(state.missing_scopes))
    if not state.ok:
        log.warning("%s", state.problem)


async def _on_database(database, url: str, step):
    """`step(db)` on a `database` (store.db.Database, passed in: it is loaded when used) for
    `url`, closed after; `DatabaseUnusable` comes out as raised, from the URL or the step."""
    db = database(url)
    try:
        return await step(db)
    finally:
        await db.dispose()


async def migrate(settings: Settings | MigrateSettings, out=print) -> int:
    """Bring the schema to the head revision (what `sitrep run` also does at start, under the
    same lock). Exit 0 when done, 2 when `DATABASE_URL` cannot be used."""
    # Imported here: `sitrep --version` and `--help` need neither SQLAlchemy nor Alembic.
    from store.db import Database, DatabaseUnusable
    from store.migrations import HEAD  # (same reason)

    try:
        was = await _on_database(Database, settings.database_url, lambda db: db.prepare())
    except DatabaseUnusable as exc:
        out(f"sitrep: DATABASE_URL {exc}.")
        return EXIT_SETTINGS
    out(f"database: at revision {HEAD}" + (" (already)" if was == HEAD else f" (was {was or 'empty'})"))
    return EXIT_OK


# What to fix when a service refuses: the variables, as the operator knows them.
_URL_SETTING = {"status page": "STATUSPAGE_URL", "appfirst": "APPFIRST_URL"}
_KEY_SETTING = {"status page": "STATUSPAGE_API_KEY", "appfirst": "APPFIRST_EMAIL and APPFIRST_API_KEY"}


def _upstream_reason(name: str, url: str, exc: Exception) -> str:
    """One line for `sitrep check`: what went wrong, the URL tried, and what to look at —
    never "try again later", which is no advice for a configuration mistake."""
    # Imported when used: `sitrep --help` and bad settings answer without loading the bot.
    from bot.errors import UpstreamError, UpstreamUnauthorized, UpstreamWrongURL

    if isinstance(exc, UpstreamWrongURL):
        return f"HTTP {exc.status} from {exc.url} — check {_URL_SETTING[name]}"
    if isinstance(exc, UpstreamUnauthorized):
        return f"{exc.message} at {url} — check {_KEY_SETTING[name]}"
    if isinstance(exc, UpstreamError):
        return f"{exc.message} at {url}"
    return f"{type(exc).__name__} at {url}"


async def check(settings: Settings, out=print) -> int:
    """Reach every configured service; one line each. The exit code: 0 when everything
    answered, 1 when a service failed, 2 when `DATABASE_URL` cannot be used. In the sandbox
    the stand-ins are started and reached as `sitrep run --sandbox` would."""
    if not settings.sitrep_sandbox:
        return await _check(settings, out)
    # Imported when used: only the sandbox needs the stand-ins.
    from bot.sandbox import Sandbox

    out(
        "sandbox: on (stand-ins for the status page and AppFirst, a throwaway database; "
        "STATUSPAGE_URL, APPFIRST_URL and DATABASE_URL are not used)"
    )
    async with Sandbox() as sandbox:
        return await _check(sandbox.configure(settings), out)


async def _check(settings: Settings, out) -> int:
    # Imported when used: `sitrep --help` and bad settings answer without loading the bot.
    from bot.clients.slack import make_slack_client
    from bot.context import build_upstreams  # loaded when used (start-up cost)
    from bot.slack.preflight import BotTokenRefused, check_token  # (same reason)

    slack = make_slack_client(settings)
    statuspage, appfirst = build_upstreams(settings)
    code = EXIT_OK
    try:
        try:
            token = await check_token(slack)
            out(f"slack: ok (workspace {token.answer.get('team')}, bot user {token.answer.get('user')})")
        except BotTokenRefused as exc:
            code = EXIT_REFUSED
            out(f"slack: FAILED ({exc})")
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            code = EXIT_REFUSED
            out(f"slack: FAILED ({_slack_reason(exc)} at {settings.slack_api_url}auth.test)")
        else:
            if not await _check_channel(slack, settings, out, token.scopes):
                code = EXIT_REFUSED
        if not await _check_socket_mode(slack, settings, out):
            code = EXIT_REFUSED
        for name, client in (("status page", statuspage), ("appfirst", appfirst)):
            if client is None:
                out(f"{name}: not configured")
                continue
            try:
                await client.ping()
                out(f"{name}: ok ({'sandbox stand-in, ' if settings.sitrep_sandbox else ''}{client.ping_url})")
            except Exception as exc:  # noqa: BLE001
                code = EXIT_REFUSED
                out(f"{name}: FAILED ({_upstream_reason(name, client.ping_url, exc)})")
        code = max(code, await _check_database(settings, out))
        if not settings.incidents_enabled:
            out("incidents: disabled (STATUSPAGE_URL is not set)")
        out(f"maintenance backend: {settings.maintenance_backend if settings.maintenance_enabled else 'disabled'}")
    finally:
        for client in (statuspage, appfirst):
            if client is not None:
                await client.aclose()
    return code


def needed_scopes(settings: Settings) -> tuple[str, ...]:
    """The bot scopes the enabled features need (bot/slack/manifest.py)."""
    from bot.slack.manifest import required_scopes  # noqa: PLC0415 - loaded when used (start-up cost)

    return required_scopes(
        incident_channels=settings.sitrep_incident_channels, private_rooms=settings.sitrep_incident_channel_private
    )


async def _check_channel(slack, settings: Settings, out, granted: frozenset[str] | None) -> bool:
    """Can the bot read and post in SITREP_CHANNEL, and has its token every scope needed
    (`granted`: the scopes auth.test's answer named)?"""
    from bot.slack.preflight import check_channel  # noqa: PLC0415 - loaded when used (start-up cost)

    try:
        state = await check_channel(slack, settings.sitrep_channel, needed_scopes(settings), granted)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        out(f"channel: FAILED ({_slack_reason(exc)} at {settings.slack_api_url}conversations.history)")
        return False
    out(f"channel: ok ({settings.sitrep_channel})" if state.ok else f"channel: FAILED ({state.problem})")
    return state.ok


async def _check_database(settings: Settings, out) -> int:
    """Read the schema's revision without writing anything (`check` never migrates): 0 when
    it is this version's or the database is empty (`run` and `migrate` create it), 1 when it
    is behind (the line says to run `sitrep migrate`), 2 when it cannot be used."""
    from store.db import STORE_FAILURES, Database, DatabaseUnusable  # noqa: PLC0415 - loaded when used (start-up cost)
    from store.migrations import HEAD  # noqa: PLC0415 - (same reason)

    async def inspect(db) -> str | None:
        was = await db.revision()
        if was == HEAD:
            await db.check_writable(timeout=10)  # a write that changes nothing, rolled back
        return was

    try:
        was = await _on_database(Database, settings.database_url, inspect)
    except (DatabaseUnusable, *STORE_FAILURES) as exc:
        reason = exc if isinstance(exc, DatabaseUnusable) else f"cannot be written ({type(exc).__name__})"
        out(f"database: FAILED (DATABASE_URL {reason})")
        return EXIT_SETTINGS
    if was == HEAD:
        out(f"database: ok (schema at {was})")
        return EXIT_OK
    if was is None:
        out(f"database: ok (empty: `sitrep migrate`, or `sitrep run` at its start, creates schema {HEAD})")
        return EXIT_OK
    out(f"database: schema at {was}, this version needs {HEAD}: run `sitrep migrate`")
    return EXIT_REFUSED


async def _check_socket_mode(slack, settings: Settings, out) -> bool:
    """Ask Slack for a websocket URL with the app token, as `sitrep run` does first. The check
    does not connect: Slack would hand a running bot's commands to that connection too."""
    # Imported when used: `sitrep --help` and bad settings answer without loading the bot.
    from bot.inbound.socket_mode import SocketModeRefused, open_connection_url

    if settings.slack_app_token is None:
        out("socket mode: not configured (HTTP mode)")
        return True
    try:
        await open_connection_url(slack, settings.slack_app_token.get_secret_value())
    except SocketModeRefused as exc:
        out(f"socket mode: FAILED ({exc.error})")
        return False
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        out(f"socket mode: FAILED ({type(exc).__name__})")
        return False
    out("socket mode: ok")
    return True


def _slack_reason(exc: Exception) -> str:
    """Slack's error code, `unreadable_answer` for a body that was not Slack's, or the kind
    of failure when there was no answer at all."""
    from slack_sdk.errors import SlackApiError  # noqa: PLC0415 - loaded when used (start-up cost)

    from bot.clients.slack import slack_error  # noqa: PLC0415 - loaded when used (start-up cost)

    return slack_error(exc) if isinstance(exc, SlackApiError) else type(exc).__name__


def _line_to(ok, failed):
    """`migrate` prints its result on stdout and its one-line refusal on stderr."""
    return lambda line: print(line, file=failed if line.startswith("sitrep:") else ok)


def _version() -> str:
    """The installed distribution's version: what an image or a wheel actually holds."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sitrep")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


SANDBOX_HELP = (
    "try sitrep without a status page: stand-ins for the status-page and AppFirst APIs run inside the "
    "process and answer as their API documents describe, with a throwaway database (STATUSPAGE_URL, "
    "APPFIRST_URL and DATABASE_URL are not used; every announcement says sandbox). Same as SITREP_SANDBOX=1"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sitrep",
        description="Slack chat-ops for your status page: incidents and maintenance from Slack.",
        epilog="Settings come from the environment or a .env file in the working directory (see docs/settings.md); exit codes in docs/operating.md.",
    )
    parser.add_argument("--version", action="version", version=f"sitrep {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,check,migrate,manifest,preview}")
    run = sub.add_parser(
        "run",
        help="start the bot (Socket Mode if SLACK_APP_TOKEN is set, else HTTP on PORT)",
        description=(
            "Start the bot. With SLACK_APP_TOKEN set it connects to Slack over Socket Mode; otherwise it "
            "serves Slack's requests at POST /slack/events and liveness at GET /healthz on PORT (default 3000). "
            "It posts maintenance reminders on its own and polls the maintenance API every "
            "SITREP_SYNC_INTERVAL seconds. Stops cleanly on SIGTERM or Ctrl-C. Every missing or bad setting "
            "stops it at once, one line each naming the variable (exit 2); so does a bot token Slack refuses "
            "or one lacking scopes (exit 1). A bot not in SITREP_CHANNEL is one warning line. An out-of-date "
            "database schema is upgraded first, under a lock, as `sitrep migrate` does."
        ),
    )
    run.add_argument("--sandbox", action="store_true", help=SANDBOX_HELP)
    sub.add_parser(
        "migrate",
        help="upgrade the database schema to this version's",
        description=(
            "Upgrade the schema of DATABASE_URL to the newest revision this sitrep knows, then exit. Only "
            "DATABASE_URL (and LOG_LEVEL, LOG_FORMAT) is read: no Slack setting is needed. Replicas "
            "take a PostgreSQL advisory lock first, so several starting together migrate once. Exit 0 when "
            "done, 2 when the database cannot be used."
        ),
    )
    check_parser = sub.add_parser(
        "check",
        help="validate the configuration and reach every configured service",
        description=(
            "Validate the settings, then reach every configured service once: Slack (auth.test, and "
            "SITREP_CHANNEL: can the bot read and post there), the status page and AppFirst (a read-only call "
            "each) and the database (its schema revision, read only: check never writes), printing one line "
            "per service with the URL it tried. Exit 0 when all answered, 1 when a service failed or the "
            "schema is behind, 2 for a bad setting."
        ),
    )
    check_parser.add_argument("--sandbox", action="store_true", help="check the sandbox's set-up (see sitrep run --help)")
    manifest_parser = sub.add_parser(
        "manifest",
        help="print a ready Slack app manifest (Socket Mode or HTTP)",
        description=(
            "Print the Slack app manifest sitrep needs, as JSON, ready to paste at https://api.slack.com/apps "
            "(Create New App, From an app manifest). No setting is read. Exit 0, or 2 for a bad option."
        ),
    )
    mode = manifest_parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--socket-mode", action="store_true", help="no public address needed (set SLACK_APP_TOKEN)")
    mode.add_argument("--url", metavar="https://…", help="the public HTTPS address that reaches `sitrep run` (HTTP mode)")
    manifest_parser.add_argument(
        "--incident-channels", action="store_true", help="with the scopes of a channel per incident (SITREP_INCIDENT_CHANNELS=on)"
    )
    sub.add_parser(
        "preview",
        help="print a Block Kit Builder link for each message and form",
        description=(
            "Print a link to Slack's Block Kit Builder for each message and form sitrep shows, built by the "
            "same code that builds them for Slack, with made-up sample data. No setting is read."
        ),
    )
    return parser


def _preview() -> int:
    """`sitrep preview`: a Block Kit Builder link per message and form."""
    from handlers.preview import preview_lines  # noqa: PLC0415 - loads the handlers: only this command needs them

    for line in preview_lines():
        print(line)
    return EXIT_OK


def _manifest(args) -> int:
    """`sitrep manifest`: the manifest on stdout, what to do with it on stderr."""
    from bot.slack.manifest import ManifestError, build_manifest, manifest_hint  # noqa: PLC0415 - only this command

    try:
        manifest = build_manifest(url=args.url, socket_mode=args.socket_mode, incident_channels=args.incident_channels)
    except ManifestError as exc:
        print(f"sitrep: {exc}", file=sys.stderr)
        return EXIT_SETTINGS
    print(json.dumps(manifest, indent=2, ensure_ascii=False))
    print(manifest_hint(socket_mode=args.socket_mode), file=sys.stderr)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Neither reads a setting: they work before there is a Slack app to take settings from.
    if args.command == "manifest":
        return _manifest(args)
    if args.command == "preview":
        return _preview()
    try:
        # `migrate` reads only DATABASE_URL (and the log settings): a deploy step or an init
        # container can run it without the Slack secrets.
        if args.command == "migrate":
            settings = load_migrate_settings()
        else:
            settings = load_settings(**({"sitrep_sandbox": True} if getattr(args, "sandbox", False) else {}))
    except SettingsError as exc:
        for line in exc.lines:  # every bad variable of this run, one line each
            print(f"sitrep: {line}", file=sys.stderr)
        return EXIT_SETTINGS
    if isinstance(settings, MigrateSettings):
        configure_logs(level=settings.log_level, fmt=settings.log_format, secrets=_url_password(settings.database_url))
        return asyncio.run(migrate(settings, out=_line_to(sys.stdout, sys.stderr)))
    configure_logging(settings)
    if args.command == "check":
        return asyncio.run(check(settings))
    # uvicorn shuts down gracefully on SIGTERM and then re-raises the signal; under the
    # default handler that kills the process (exit -15) after a clean stop. Exit 0 instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Imported when used: `sitrep --help` and bad settings answer without loading the bot.
    from bot.inbound.socket_mode import SocketModeDisabled, SocketModeRefused
    from bot.slack.preflight import BotTokenRefused, ScopesMissing  # (same reason)

    try:
        asyncio.run(_run(settings))
    except Unusable as exc:
        print(f"sitrep: {exc}", file=sys.stderr)
        return EXIT_SETTINGS
    except KeyboardInterrupt:
        pass
    except (SocketModeRefused, SocketModeDisabled, BotTokenRefused, ScopesMissing) as exc:
        print(f"sitrep: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK
