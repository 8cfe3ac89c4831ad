"""What every upstream client shares: one httpx client with its timeout, closed once."""

from __future__ import annotations

from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit

import httpx

from bot.errors import public_url


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
