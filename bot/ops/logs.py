"""Logging: level and format from settings, the request's context on every line, one audit
line per change (its own logger, never silenced by LOG_LEVEL), probes and scrapes at DEBUG,
and a last line of defence against secrets and control characters.

The context (Slack user, command or action, incident/window id, upstream id) lives in a
contextvar: the Bolt middleware sets it per request and the services add to it; asyncio
copies it into every task started from there, so a listener's lines carry it too."""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from bot.ops.redaction import escape_controls, scrub

# Never changed in place (`bind` sets a new dict): the empty default is read-only.
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("sitrep_log_context", default=MappingProxyType({}))
audit_log = logging.getLogger("sitrep.audit")

# At WARNING unless LOG_LEVEL=DEBUG. `uvicorn.access` is a line per HTTP request: on the ack's
# path (redacted, formatted and written on the loop) it cost a Slack request about as much
# CPU again as a bare Bolt app spends answering it, while `sitrep_ack_seconds` counts and
# times every request, the audit line records every change and the edge logs every refusal.
# `slack_sdk.web.async_base_client` is the logger of every Slack client (ours and the one Bolt
# makes per request). slack_sdk asks that logger's own `level`, not whether DEBUG is on: left
# unset (0) it formatted each call's whole request and answer (a modal's every block) to hand
# to a logger that dropped them, a tenth of a declare's CPU.
NOISY = (
    "httpx",
    "httpcore",
    "apscheduler.executors",
    "aiosqlite",
    "slack_bolt",
    "sitrep.bolt",
    "slack_sdk.web.async_base_client",
    "alembic",
    "uvicorn.access",
)


def bind(**fields: Any) -> None:
    """Add fields to the context of the current request or job (None values are dropped)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def current() -> dict[str, Any]:
    return dict(_context.get())


def clear() -> None:
    _context.set({})


#: Paths an orchestrator or Prometheus asks every few seconds: their access lines are DEBUG.
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def audit(action: str, *, user: str | None, outcome: str, reason: str | None = None, **target: Any) -> None:
    """One line per change: who did what to which incident or window, and the upstream's
    answer. `action`, `outcome`, `user`, `reason` and the ids are fields of their own (JSON
    keys), so a log pipeline can count and filter on them."""
    bind(**target)
    ids = {k: v for k, v in target.items() if v is not None}
    fields = {"action": str(action), "outcome": outcome, "user": user or "-", **({"reason": reason} if reason else {}), **ids}
    described = " ".join(f"{k}={v}" for k, v in ids.items())
    said = f"{outcome}: {reason}" if reason else outcome
    audit_log.info("%s by %s %s: %s", action, user or "-", described or "-", said, extra={"audit": fields})


class Redact(logging.Filter):
    """Last line of defence: any 8+-character piece of a configured secret is blanked out
    (bot.ops.redaction.scrub), and control characters become escapes, so one event is one line
    that cannot be forged or repaint a terminal. Tracebacks are scrubbed too."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 6]

    def filter(self, record: logging.LogRecord) -> bool:
        message = escape_controls(scrub(record.getMessage(), self.secrets))
        record.msg, record.args = message, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, self.secrets)
        record.sitrep_context = {k: escape_controls(scrub(str(v), self.secrets)) for k, v in _context.get().items()}
        fields = getattr(record, "audit", None)
        if isinstance(fields, dict):
            record.audit = {k: escape_controls(scrub(str(v), self.secrets)) for k, v in fields.items()}
        return True


class QuietProbes(logging.Filter):
    """uvicorn's access line for a probe or a scrape becomes DEBUG (shown only at
    LOG_LEVEL=DEBUG): every few seconds from each orchestrator and Prometheus, they would
    bury the lines that matter."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or len(args) < 3 or str(args[2]).partition("?")[0] not in PROBE_PATHS:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the request's context, and the
    traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "sitrep_context", None) or {})
        fields = getattr(record, "audit", None)
        if isinstance(fields, dict):
            entry.update(fields)
            entry["audit"] = True
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=True)


class TextFormatter(logging.Formatter):
    """The human format, with the context as `key=value` after the message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = getattr(record, "sitrep_context", None)
        if not context:
            return line
        head, sep, rest = line.partition("\n")
        return head + " [" + " ".join(f"{k}={v}" for k, v in context.items()) + "]" + sep + rest


def configure(*, level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    """Send every log line to stderr, filtered through `Redact`, in the chosen format."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(Redact(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet = max(logging.WARNING, logging.getLevelName(level))
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(quiet if level != "DEBUG" else logging.DEBUG)
    # Changes are always told, whatever LOG_LEVEL: the audit logger keeps INFO of its own.
    audit_log.setLevel(logging.INFO)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, QuietProbes) for f in access.filters):
        access.addFilter(QuietProbes())
