"""What every upstream client shares: one httpx client with its timeout, closed once."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import httpx


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
        self._base_url = base_url.rstrip("/") + "/"
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            auth=auth,
            headers={"Accept": "application/json", **(headers or {})},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

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
