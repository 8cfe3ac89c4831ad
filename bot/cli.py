"""`sitrep run` and `sitrep check`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from bot.settings import Settings, SettingsError, load_settings


class RedactSecrets(logging.Filter):
    """Last line of defence: no configured secret ever reaches a log line."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 6]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "[redacted]")
            record.msg, record.args = message, None
        return True


def secrets_of(settings: Settings) -> list[str]:
    values = [settings.slack_bot_token, settings.slack_signing_secret, settings.slack_app_token]
    values += [settings.statuspage_api_key, settings.appfirst_api_key]
    return [v.get_secret_value() for v in values if v is not None]


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets_of(settings)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("httpx", "httpcore", "apscheduler.executors", "aiosqlite", "slack_bolt", "sitrep.bolt"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def _run(settings: Settings) -> None:
    from bot.app import Sitrep
    from bot.context import build_context

    bot = Sitrep(build_context(settings))
    if settings.socket_mode:
        await bot.serve_socket_mode()
    else:
        await bot.serve_http()


async def check(settings: Settings, out=print) -> bool:
    """Reach every configured service; one line each. True when all answered."""
    from bot.context import build_context

    ctx = build_context(settings)
    ok = True
    try:
        try:
            auth = await ctx.slack.auth_test()
            out(f"slack: ok (workspace {auth.get('team')}, bot user {auth.get('user')})")
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            ok = False
            out(f"slack: FAILED ({_slack_reason(exc)})")
        ok = await _check_socket_mode(ctx, settings, out) and ok
        for name, client in (("status page", ctx.statuspage), ("appfirst", ctx.appfirst)):
            if client is None:
                out(f"{name}: not configured")
                continue
            try:
                await client.ping()
                out(f"{name}: ok")
            except Exception as exc:  # noqa: BLE001
                ok = False
                out(f"{name}: FAILED ({exc})")
        try:
            await ctx.db.create_tables()
            out("database: ok")
        except Exception as exc:  # noqa: BLE001
            ok = False
            out(f"database: FAILED ({type(exc).__name__})")
        if not settings.incidents_enabled:
            out("incidents: disabled (STATUSPAGE_URL is not set)")
        out(f"maintenance backend: {settings.maintenance_backend if settings.maintenance_enabled else 'disabled'}")
    finally:
        await ctx.aclose()
    return ok


async def _check_socket_mode(ctx, settings: Settings, out) -> bool:
    """Ask Slack for a websocket URL with the app token, as `sitrep run` does first. The check
    does not connect: Slack would hand a running bot's commands to that connection too."""
    from bot.socket_mode import SocketModeRefused, open_connection_url

    if settings.slack_app_token is None:
        out("socket mode: not configured (HTTP mode)")
        return True
    try:
        await open_connection_url(ctx.slack, settings.slack_app_token.get_secret_value())
    except SocketModeRefused as exc:
        out(f"socket mode: FAILED ({exc.error})")
        return False
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        out(f"socket mode: FAILED ({type(exc).__name__})")
        return False
    out("socket mode: ok")
    return True


def _slack_reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            return str(response.get("error"))
        except Exception:  # noqa: BLE001
            pass
    return type(exc).__name__


def _version() -> str:
    """The installed distribution's version: what an image or a wheel actually holds."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sitrep")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sitrep", description="Slack chat-ops for your status page.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start the bot (Socket Mode if SLACK_APP_TOKEN is set, else HTTP on PORT)")
    sub.add_parser("check", help="validate the configuration and reach every configured service")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"sitrep: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    if args.command == "check":
        return 0 if asyncio.run(check(settings)) else 1
    # uvicorn shuts down gracefully on SIGTERM and then re-raises the signal; under the
    # default handler that kills the process (exit -15) after a clean stop. Exit 0 instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from bot.socket_mode import SocketModeRefused

    try:
        asyncio.run(_run(settings))
    except KeyboardInterrupt:
        pass
    except SocketModeRefused as exc:
        print(f"sitrep: {exc}", file=sys.stderr)
        return 1
    return 0
