"""`sitrep run`, `sitrep check` and `sitrep --version`."""

from __future__ import annotations

import argparse
import asyncio
import gc
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
        await ctx.db.prepare()  # before serving: a bad database stops start-up in one line
    except DatabaseUnusable as exc:
        await ctx.aclose()
        raise Unusable(f"DATABASE_URL {exc}.") from None
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


async def migrate(settings: Settings | MigrateSettings, out=print) -> int:
    """Bring the schema to the head revision (what `sitrep run` also does at start, under the
    same lock). Exit 0 when done, 2 when `DATABASE_URL` cannot be used."""
    # Imported here: `sitrep --version` and `--help` need neither SQLAlchemy nor Alembic.
    from store.db import Database, DatabaseUnusable
    from store.migrations import head  # (same reason)

    try:
        db = Database(settings.database_url)
    except DatabaseUnusable as exc:
        out(f"sitrep: DATABASE_URL {exc}.")
        return 2
    try:
        was = await db.prepare()
    except DatabaseUnusable as exc:
        out(f"sitrep: DATABASE_URL {exc}.")
        return 2
    finally:
        await db.dispose()
    out(f"database: at revision {head()}" + (" (already)" if was == head() else f" (was {was or 'empty'})"))
    return 0


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
    from store.db import Database, DatabaseUnusable  # loaded when used (start-up cost)

    slack = make_slack_client(settings)
    statuspage, appfirst = build_upstreams(settings)
    code = 0
    try:
        try:
            auth = await slack.auth_test()
            out(f"slack: ok (workspace {auth.get('team')}, bot user {auth.get('user')})")
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            code = 1
            out(f"slack: FAILED ({_slack_reason(exc)} at {settings.slack_api_url}auth.test)")
        if not await _check_socket_mode(slack, settings, out):
            code = 1
        for name, client in (("status page", statuspage), ("appfirst", appfirst)):
            if client is None:
                out(f"{name}: not configured")
                continue
            try:
                await client.ping()
                out(f"{name}: ok ({'sandbox stand-in, ' if settings.sitrep_sandbox else ''}{client.ping_url})")
            except Exception as exc:  # noqa: BLE001
                code = 1
                out(f"{name}: FAILED ({_upstream_reason(name, client.ping_url, exc)})")
        try:
            db = Database(settings.database_url)
        except DatabaseUnusable as exc:
            code = 2
            out(f"database: FAILED (DATABASE_URL {exc})")
        else:
            try:
                await db.prepare()
                out("database: ok")
            except DatabaseUnusable as exc:
                code = 2
                out(f"database: FAILED (DATABASE_URL {exc})")
            finally:
                await db.dispose()
        if not settings.incidents_enabled:
            out("incidents: disabled (STATUSPAGE_URL is not set)")
        out(f"maintenance backend: {settings.maintenance_backend if settings.maintenance_enabled else 'disabled'}")
    finally:
        for client in (statuspage, appfirst):
            if client is not None:
                await client.aclose()
    return code


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
        epilog="Settings come from the environment or a .env file in the working directory (see README.md).",
    )
    parser.add_argument("--version", action="version", version=f"sitrep {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,check,migrate}")
    run = sub.add_parser(
        "run",
        help="start the bot (Socket Mode if SLACK_APP_TOKEN is set, else HTTP on PORT)",
        description=(
            "Start the bot. With SLACK_APP_TOKEN set it connects to Slack over Socket Mode; otherwise it "
            "serves Slack's requests at POST /slack/events and liveness at GET /healthz on PORT (default 3000). "
            "It posts maintenance reminders on its own and polls the maintenance API every "
            "SITREP_SYNC_INTERVAL seconds. Stops cleanly on SIGTERM or Ctrl-C. A missing or bad setting "
            "stops it at once with one line naming the variable (exit 2). An out-of-date database schema is "
            "upgraded first, under a lock, as `sitrep migrate` does."
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
            "Validate the settings, then reach every configured service once: Slack (auth.test), the status "
            "page and AppFirst (a read-only call each) and the database, printing one line per service with "
            "the URL it tried. Exit 0 when all answered, 1 when a service failed, 2 for a bad setting."
        ),
    )
    check_parser.add_argument("--sandbox", action="store_true", help="check the sandbox's set-up (see sitrep run --help)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        # `migrate` reads only DATABASE_URL (and the log settings): a deploy step or an init
        # container can run it without the Slack secrets.
        if args.command == "migrate":
            settings = load_migrate_settings()
        else:
            settings = load_settings(**({"sitrep_sandbox": True} if getattr(args, "sandbox", False) else {}))
    except SettingsError as exc:
        print(f"sitrep: {exc}", file=sys.stderr)
        return 2
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
    from bot.inbound.socket_mode import SocketModeRefused

    try:
        asyncio.run(_run(settings))
    except Unusable as exc:
        print(f"sitrep: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    except SocketModeRefused as exc:
        print(f"sitrep: {exc}", file=sys.stderr)
        return 1
    return 0
