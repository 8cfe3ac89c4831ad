"""A stand-in for the AppFirst maintenance-windows API of seed 003.

Lists and single GETs carry epoch numbers; POST/PUT replies carry ``yyyy-mm-dd HH:MM:SS``
strings, exactly the mix the seed shows. Windows are kept in ``windows`` as ``{"id",
"reason", "start", "end", "servers"}`` with aware UTC datetimes.

Like the seed's server, it keeps other times than it is sent: every POST and PUT stores
``sent + shift`` (``SEED_SHIFT``, +5 h: the seed sends ``14:00`` and gets ``19:00`` back) and
says so in its reply, so the sandbox shows sitrep learning the offset. `sitrep run --sandbox`
serves it on loopback; the tests' `FakeAppFirst` serves the same rules with switches.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from bot.sandbox.server import StandIn

MAX_LIMIT = 2500
# Seed 003's POST and PUT examples: sent "2012-10-20 14:00", replied "2012-10-20 19:00:00".
# Assumption: the difference is one fixed offset for every write (the seed shows one).
SEED_SHIFT = timedelta(hours=5)

_FORM_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")


def error(message: str, status: int) -> web.Response:
    """The seed shows no error body; assumption: `{"message": ...}` with the status."""
    return web.json_response({"message": message}, status=status)


def _epoch(value: datetime) -> int:
    return int(value.timestamp())


def _reply_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _parse_form_time(text: str) -> datetime | None:
    for fmt in _FORM_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    return None


def _parse_servers(text: str) -> list[int] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return None
    return value


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class AppFirstStandIn(StandIn):
    """The AppFirst maintenance-windows API of seed 003, with HTTP basic auth `email:api_key`."""

    name = "appfirst"

    def __init__(self, email: str, api_key: str) -> None:
        super().__init__()
        self.windows: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self.email, self.api_key = email, api_key
        self.reset_rules()

    def reset_rules(self) -> None:
        """The switches of the seed's open questions, at their defaults."""
        self.shift: timedelta = SEED_SHIFT
        self.delete_status: int = 204

    def clear(self) -> None:
        with self._lock:
            self.windows.clear()
            self._ids = itertools.count(1)

    def _reply_lost(self) -> bool:
        """Whether the reply to a POST/PUT that was carried out is lost on its way back: the
        stand-in never loses one; the tests' fake can."""
        return False

    def add_window(self, start: datetime, end: datetime, reason: str = "", servers: Iterable[int] = ()) -> int:
        """Seed a window as if it was made outside the bot (no time shift applied)."""
        with self._lock:
            window_id = next(self._ids)
            self.windows[window_id] = {
                "id": window_id,
                "reason": reason,
                "start": _aware(start),
                "end": _aware(end),
                "servers": list(servers),
            }
        return window_id

    # -- HTTP ---------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        # assumption: the seed's paths say /api/…, its own `url` fields /api/v5/…: both
        # prefixes reach the same API (an APPFIRST_URL ending in /api/v5 is sent to the second).
        for prefix in ("/api", "/api/v5"):
            app.router.add_get(f"{prefix}/maintenance_windows/", self._list)
            app.router.add_post(f"{prefix}/maintenance_windows/", self._create)
            item = prefix + "/maintenance_windows/{window_id:\\d+}/"
            app.router.add_get(item, self._get)
            app.router.add_put(item, self._update)
            app.router.add_delete(item, self._delete)

    def _check_auth(self, request: web.Request) -> web.StreamResponse | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            decoded = base64.b64decode(token, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        if scheme.lower() != "basic" or decoded != f"{self.email}:{self.api_key}":
            return web.json_response(
                {"message": "Authentication failed: invalid email or API key."},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="api"'},
            )
        return None

    def _page_url(self, limit: int, page: int) -> str:
        return f"{self.url}/api/maintenance_windows/?limit={limit}&page={page}"

    def _listed(self, window: dict[str, Any], now: datetime) -> dict[str, Any]:
        return {
            "id": window["id"],
            "reason": window["reason"],
            "start": _epoch(window["start"]),
            "end": _epoch(window["end"]),
            "started": window["start"] <= now,
            "ended": window["end"] <= now,
            "servers": list(window["servers"]),
            "url": f"/api/v5/maintenance_windows/{window['id']}/",
        }

    async def _list(self, request: web.Request) -> web.StreamResponse:
        try:
            limit = int(request.query.get("limit", MAX_LIMIT))
            page = int(request.query.get("page", 0))
        except ValueError:
            return error("limit and page must be integers.", 400)
        if not 1 <= limit <= MAX_LIMIT:
            return error(f"limit must be between 1 and {MAX_LIMIT}.", 400)
        if page < 0:
            return error("page must be 0 or more.", 400)
        now = self.clock()
        with self._lock:
            # Newest first, as in the seed's example (61 before 39).
            ordered = sorted(self.windows.values(), key=lambda w: w["id"], reverse=True)
        count = len(ordered)
        chunk = ordered[page * limit : (page + 1) * limit]
        body = {
            "pagination": {
                "count": count,
                "next": self._page_url(limit, page + 1) if (page + 1) * limit < count else None,
                "previous": self._page_url(limit, page - 1) if page > 0 else None,
            },
            "data": [self._listed(w, now) for w in chunk],
        }
        return web.json_response(body)

    async def _read_form(self, request: web.Request, current: dict[str, Any] | None = None) -> dict[str, Any] | web.Response:
        """Validate POST/PUT form fields; returns the new field values or a 400."""
        form = await request.post()
        fields = {k: str(v) for k, v in form.items()}
        missing = [name for name in ("start", "end", "servers") if not fields.get(name, "").strip()]
        if missing:
            return error(f"Missing required field(s): {', '.join(missing)}.", 400)
        start, end = _parse_form_time(fields["start"]), _parse_form_time(fields["end"])
        if start is None or end is None:
            return error("start and end must be UTC times like yyyy-mm-dd HH:MM.", 400)
        servers = _parse_servers(fields["servers"])
        if servers is None:
            return error("servers must be a list of server IDs like [1,2,3].", 400)
        if end <= start:
            return error("end must be after start.", 400)
        shift = self.shift
        default_reason = current["reason"] if current else ""
        return {"start": start + shift, "end": end + shift, "reason": fields.get("reason", default_reason), "servers": servers}

    async def _create(self, request: web.Request) -> web.StreamResponse:
        values = await self._read_form(request)
        if isinstance(values, web.Response):
            return values
        with self._lock:
            window_id = next(self._ids)
            window = {"id": window_id, **values}
            self.windows[window_id] = window
        if self._reply_lost():
            return error("Gateway timeout.", 504)
        # Seed 003's POST reply: strings for times, reason included, no started/ended.
        return web.json_response(
            {
                "id": window_id,
                "url": f"/api/v5/maintenance_windows/{window_id}/",
                "start": _reply_time(window["start"]),
                "end": _reply_time(window["end"]),
                "reason": window["reason"],
                "servers": window["servers"],
            }
        )

    def _find(self, request: web.Request) -> dict[str, Any] | None:
        with self._lock:
            return self.windows.get(int(request.match_info["window_id"]))

    async def _get(self, request: web.Request) -> web.StreamResponse:
        window = self._find(request)
        if window is None:
            return error("Not found.", 404)
        return web.json_response(self._listed(window, self.clock()))

    async def _update(self, request: web.Request) -> web.StreamResponse:
        window = self._find(request)
        if window is None:
            return error("Not found.", 404)
        values = await self._read_form(request, current=window)
        if isinstance(values, web.Response):
            return values
        with self._lock:
            window.update(values)
        if self._reply_lost():
            return error("Gateway timeout.", 504)
        # Seed 003's PUT reply: like POST's but without "reason".
        return web.json_response(
            {
                "id": window["id"],
                "url": f"/api/v5/maintenance_windows/{window['id']}/",
                "start": _reply_time(window["start"]),
                "end": _reply_time(window["end"]),
                "servers": window["servers"],
            }
        )

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            removed = self.windows.pop(int(request.match_info["window_id"]), None)
        if removed is None:
            return error("Not found.", 404)
        return web.Response(status=self.delete_status)
