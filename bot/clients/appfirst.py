"""Async client for the AppFirst maintenance-windows API (seed 003).

Two things in the seed shape this module:

* times come back as epoch seconds in lists and as ``yyyy-mm-dd HH:MM:SS``
  strings from POST/PUT, so :class:`MaintenanceWindow` accepts both;
* the server may store something other than what was sent (the seed's
  14:00 comes back as 19:00), so every write returns the server's reply and
  callers schedule from that, not from their own input.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, field_validator

from bot.clients.http import MAX_MESSAGE, NOT_JSON, UpstreamClient, decode, observed
from bot.errors import UpstreamUnavailable

__all__ = [
    "SERVICE",
    "MAX_PAGE_SIZE",
    "MaintenanceWindow",
    "Pagination",
    "MaintenanceWindowPage",
    "AppFirstClient",
    "parse_appfirst_time",
    "format_form_time",
    "format_servers",
]

SERVICE = "AppFirst"
URL_SETTING = "APPFIRST_URL"  # named when the API is not where it points
MAX_PAGE_SIZE = 2500
# Far beyond any real account (2,500,000 windows at full page size); only
# there so a server that always answers "next" cannot loop us forever.
MAX_PAGES = 1000

_LIST_PATH = "api/maintenance_windows/"
_STRING_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")


def parse_appfirst_time(value: Any) -> datetime:
    """Accept either wire form of a time (epoch seconds or ``yyyy-mm-dd HH:MM[:SS]``) as UTC."""
    if type(value) is int:  # the list's form: the common case first
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, bool):  # bool is an int; True is not a time
        raise ValueError("a boolean is not a time")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return datetime.fromtimestamp(int(text), UTC)
        for fmt in _STRING_FORMATS:
            try:
                return datetime.strptime(text, fmt).replace(tzinfo=UTC)
            except ValueError:
                pass
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"unrecognised time {value!r}") from None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    raise ValueError(f"unrecognised time {value!r}")


def format_form_time(value: datetime) -> str:
    """The seed's request form ``yyyy-mm-dd HH:MM`` in UTC (seconds are dropped)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: AppFirst needs an unambiguous UTC time")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def format_servers(servers: Iterable[int]) -> str:
    """The seed's ``servers=[1,2,3]`` form value."""
    return "[" + ",".join(str(int(s)) for s in servers) + "]"


class MaintenanceWindow(BaseModel):
    """One maintenance window as the server reports it.

    ``started``/``ended`` are ``None`` when the reply omits them (POST/PUT replies do).
    """

    id: int
    reason: str = ""
    start: datetime
    end: datetime
    started: bool | None = None
    ended: bool | None = None
    servers: list[int] = Field(default_factory=list)
    url: str | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _parse_time(cls, value: Any) -> datetime:
        return parse_appfirst_time(value)

    @field_validator("reason", mode="before")
    @classmethod
    def _reason_text(cls, value: Any) -> Any:
        return "" if value is None else value


class Pagination(BaseModel):
    count: int
    next: str | None = None
    previous: str | None = None


class MaintenanceWindowPage(BaseModel):
    pagination: Pagination
    data: list[MaintenanceWindow]


_M = TypeVar("_M", bound=BaseModel)
_WINDOW_LIST = TypeAdapter(list[MaintenanceWindow])
#: Windows validated between two yields to the event loop (~5 ms of work).
PARSE_SLICE = 400


def _flatten_message(value: Any) -> str | None:
    """Turn ``"msg"``, ``["msg", ...]`` or ``{"field": ["msg"]}`` into one line."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list):
        parts = [p for p in (_flatten_message(v) for v in value) if p]
        return " ".join(parts) or None
    if isinstance(value, dict):
        for key in ("message", "detail", "error", "Message"):
            if key in value:
                found = _flatten_message(value[key])
                if found:
                    return found
        parts = []
        for key, item in value.items():
            text = _flatten_message(item)
            if text:
                parts.append(f"{key}: {text}")
        return "; ".join(parts) or None
    return None


class AppFirstClient(UpstreamClient):
    """Talks to AppFirst as one account; every call sends HTTP basic auth."""

    service = SERVICE
    url_setting = URL_SETTING
    credentials = "the email or API key"

    def __init__(
        self,
        base_url: str,
        email: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        page_size: int = MAX_PAGE_SIZE,
        transport: httpx.AsyncBaseTransport | None = None,
        hide: tuple[str, ...] = (),
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        token = base64.b64encode(f"{email}:{api_key}".encode()).decode()
        super().__init__(
            base_url,
            timeout=timeout,
            transport=transport,
            auth=httpx.BasicAuth(email, api_key),
            secrets=(api_key, token),
            names=(email,),  # not a secret, but nobody else's business: hidden only whole
            hide=hide,
        )
        self._page_size = page_size

    # -- operations -------------------------------------------------------

    @observed
    async def list_page(self, page: int, limit: int) -> MaintenanceWindowPage:
        """One page of windows (``page`` from 0, ``limit`` 1..2500 as the seed allows)."""
        if page < 0:
            raise ValueError("page starts at 0")
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
        payload = await self._call("GET", _LIST_PATH, params={"limit": limit, "page": page})
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            return self._parse(MaintenanceWindowPage, payload, "list of maintenance windows")  # says what is wrong
        # A full page takes ~30 ms to validate: in slices, yielding between them, so other
        # users' acks never wait behind it for long.
        items = payload["data"]
        data: list[MaintenanceWindow] = []
        for first in range(0, len(items), PARSE_SLICE):
            await asyncio.sleep(0)  # the first slice too: decoding the page was a step already
            data.extend(self._parse(_WINDOW_LIST, items[first : first + PARSE_SLICE], "list of maintenance windows"))
        pagination = self._parse(Pagination, payload.get("pagination"), "list of maintenance windows")
        return MaintenanceWindowPage.model_construct(pagination=pagination, data=data)

    async def list_windows(self) -> list[MaintenanceWindow]:
        """Every window, following pages until the server says there are no more.

        Windows are de-duplicated by id, since a window created mid-walk shifts
        the pages and would otherwise be seen twice.
        """
        return [window async for page in self.pages() for window in page]

    async def pages(self) -> AsyncIterator[list[MaintenanceWindow]]:
        """`list_windows` a page at a time (de-duplicated the same way), so a caller can
        convert and drop each page's models before the next: half the objects alive at
        once over 50,000 windows, and a garbage collector's pass half as long."""
        seen: set[int] = set()
        received = 0
        for page_number in range(MAX_PAGES):
            page = await self.list_page(page_number, self._page_size)
            fresh = [w for w in page.data if w.id not in seen]
            seen.update(w.id for w in fresh)
            yield fresh
            received += len(page.data)
            if not page.data or page.pagination.next is None or received >= page.pagination.count:
                return
        raise UpstreamUnavailable(SERVICE, f"its list of maintenance windows did not end after {MAX_PAGES} pages")

    @observed
    async def get_window(self, id: int) -> MaintenanceWindow:  # the brief's name for it
        payload = await self._call("GET", self._item_path(id), window_id=id)
        return self._parse(MaintenanceWindow, payload, "maintenance window")

    @observed
    async def create_window(self, *, start: datetime, end: datetime, reason: str, servers: Iterable[int]) -> MaintenanceWindow:
        """Create a window; the returned times are what the server stored, which may differ."""
        form = self._form(start, end, reason, servers)
        payload = await self._call("POST", _LIST_PATH, data=form)
        return self._parse(MaintenanceWindow, payload, "new maintenance window")

    @observed
    async def update_window(
        self,
        id: int,  # the brief's name for it
        *,
        start: datetime,
        end: datetime,
        reason: str,
        servers: Iterable[int],
    ) -> MaintenanceWindow:
        """Replace a window's fields; returns the server's version of it."""
        form = self._form(start, end, reason, servers)
        payload = await self._call("PUT", self._item_path(id), window_id=id, data=form)
        # The seed's PUT reply leaves out "reason"; absent is not "cleared",
        # so keep the reason we sent rather than report it as empty.
        if isinstance(payload, dict) and "reason" not in payload:
            payload = {**payload, "reason": reason}
        return self._parse(MaintenanceWindow, payload, "updated maintenance window")

    @observed
    async def delete_window(self, id: int) -> None:  # the brief's name for it
        await self._call("DELETE", self._item_path(id), window_id=id, expect_body=False)

    async def ping(self) -> None:
        """Cheap authenticated call for a config check; raises the typed error on failure."""
        await self.list_page(0, 1)

    @property
    def ping_url(self) -> str:
        return self.url_of(_LIST_PATH)

    # -- plumbing ---------------------------------------------------------

    @staticmethod
    def _item_path(window_id: int) -> str:
        return f"{_LIST_PATH}{int(window_id)}/"

    @staticmethod
    def _form(start: datetime, end: datetime, reason: str, servers: Iterable[int]) -> dict[str, str]:
        return {
            "start": format_form_time(start),
            "end": format_form_time(end),
            "reason": reason,
            "servers": format_servers(servers),
        }

    @staticmethod
    def _parse(model: type[_M] | TypeAdapter, payload: Any, what: str) -> Any:
        try:
            if isinstance(model, TypeAdapter):
                return model.validate_python(payload)
            return model.model_validate(payload)
        except ValidationError:
            raise UpstreamUnavailable(SERVICE, f"its {what} reply did not have the documented fields") from None

    async def _call(
        self, method: str, path: str, *, window_id: int | None = None, expect_body: bool = True, **kwargs: Any
    ) -> Any:
        """One request through the shared mapping; a 404 on a window's own path means that
        window is gone, not that the base URL is wrong."""
        not_found = None if window_id is None else f"Maintenance window {window_id} was not found."
        return await self._request(method, path, not_found=not_found, expect_body=expect_body, **kwargs)

    def _message_in(self, response: httpx.Response) -> str | None:
        """Best human-readable reason in an error body: JSON fields, else short plain text."""
        payload = decode(response)
        if payload is not NOT_JSON:
            return _flatten_message(payload)
        text = response.text.strip()
        looks_like_page = text.startswith("<") or "html" in response.headers.get("content-type", "")
        return text if text and not looks_like_page and len(text) <= MAX_MESSAGE else None
