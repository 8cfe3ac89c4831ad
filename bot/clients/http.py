"""What every upstream client shares: one httpx client with its timeout, closed once."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from bot.errors import public_url


# (operation, the error or None, seconds): set by the wiring (bot/metrics.py), so clients
# report every call without knowing about Prometheus.
Observer = Callable[[str, BaseException | None, float], None]
_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])


def observed(method: _F) -> _F:
    """Report one upstream operation (its name, outcome and duration) to `self.observe`."""

    @functools.wraps(method)
    async def run(self: UpstreamClient, *args: Any, **kwargs: Any) -> Any:
        if self.observe is None:
            return await method(self, *args, **kwargs)
        started = time.perf_counter()
        try:
            result = await method(self, *args, **kwargs)
        except BaseException as exc:
            self.observe(method.__name__, exc, time.perf_counter() - started)
            raise
        self.observe(method.__name__, None, time.perf_counter() - started)
        return result

    return run  # type: ignore[return-value]


def api_root(url: str) -> str:
    """The address the seed paths (`api/...`) hang from, ending in `/`.

    The seeds show full paths (`/api/admin/Incident`) and operators copy the part before
    them either way: `https://host`, `https://host/`, `https://host/api` and
    `https://host/api/` all mean the same API, so a last path segment `api` is dropped
    here once, instead of every call going to `/api/api/...` and getting a 404."""
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/")
    if path.lower().endswith("/api"):
        path = path[: -len("/api")]
    return urlunsplit((parts.scheme, parts.netloc, path + "/", "", ""))


class UpstreamClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None,
        auth: httpx.Auth | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not base_url:
            raise ValueError("base_url is required")
        self._base_url = api_root(base_url)
        self.observe: Observer | None = None
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            auth=auth,
            headers={"Accept": "application/json", **(headers or {})},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    def url_of(self, path: str) -> str:
        """The full address a seed path is sent to (for messages: no credentials, no query)."""
        return public_url(self._http.base_url.join(path))

    def __repr__(self) -> str:  # never the credentials
        return f"{type(self).__name__}(base_url={self._base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
