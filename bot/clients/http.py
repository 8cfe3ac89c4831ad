"""What both upstream clients share: one httpx client with its deadline, one decoder, one
status→error mapping and redaction of every upstream text, so the seeds' clients keep only
their models, operations and the few quirks of their seed."""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from bot.errors import (
    OutcomeUnknown,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRejected,
    UpstreamUnauthorized,
    UpstreamUnavailable,
    UpstreamWrongURL,
)
from bot.ops.redaction import public_url, upstream_text

# An upstream message is quoted to people in a Slack section (3,000 characters at most);
# both upstreams' messages are held to this length.
MAX_MESSAGE = 300
NOT_JSON: Any = object()  # what `decode` returns for a body that is not JSON


# (operation, the error or None, seconds): set by the wiring (bot/ops/metrics.py), so clients
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
    versioned = _VERSIONED.search(path)
    if versioned:
        path = path[: versioned.start()]
    elif path.lower().endswith("/api"):
        path = path[: -len("/api")]
    return urlunsplit((parts.scheme, parts.netloc, path + "/", "", ""))


#: A base URL ending in a versioned API prefix, as seed 003's own `url` fields show it
#: (`/api/v5/maintenance_windows/61/`, while its paths and examples say `/api/...`).
_VERSIONED = re.compile(r"/api/(v\d+)$", re.IGNORECASE)


def api_path(url: str, path: str) -> str:
    """A seed path (`api/...`) under the version the base URL names: `https://host/api/v5`
    sends `api/maintenance_windows/` to `api/v5/maintenance_windows/`."""
    versioned = _VERSIONED.search(urlsplit(url.strip()).path.rstrip("/"))
    if versioned and path.startswith("api/"):
        return f"api/{versioned.group(1).lower()}/{path[len('api/') :]}"
    return path


def decode(response: httpx.Response) -> Any:
    """The JSON body, or `NOT_JSON` (malformed JSON and undecodable bytes alike)."""
    try:
        return response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both land here
        return NOT_JSON


async def send_request(
    client: httpx.AsyncClient,
    service: str,
    timeout: float,
    method: str,
    url: str,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request under a hard deadline, turning transport failures into typed errors.

    httpx's own timeout bounds each phase (connect, each read...) separately;
    the outer deadline makes ``timeout`` a bound on the whole call, so a server
    trickling bytes cannot hold a Slack interaction open forever.

    A failure after the request started going out is `OutcomeUnknown` (the upstream may
    have acted on it); one before (no connection, the pool full, a bad URL) is a plain
    `UpstreamUnavailable`, safe to retry. httpcore's trace tells the two apart: it reports
    when the request's headers start going out on a connection.
    """
    sent = False

    async def trace(event: str, _info: dict[str, Any]) -> None:
        nonlocal sent
        if event.endswith("send_request_headers.started"):
            sent = True

    extensions = {**kwargs.pop("extensions", {}), "trace": trace}
    try:
        async with asyncio.timeout(timeout):
            return await client.request(method, url, extensions=extensions, **kwargs)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise UpstreamUnavailable(service, "could not connect to it") from exc
    except httpx.UnsupportedProtocol as exc:
        raise UpstreamUnavailable(service, "its configured URL is not an http(s) URL") from exc
    except (TimeoutError, httpx.TimeoutException) as exc:
        if sent:
            raise OutcomeUnknown(service, f"no reply within {timeout:g} seconds") from exc
        raise UpstreamUnavailable(service, f"could not connect to it within {timeout:g} seconds") from exc
    except httpx.TransportError as exc:
        if sent:
            raise OutcomeUnknown(service, "the connection failed mid-request") from exc
        raise UpstreamUnavailable(service, "could not connect to it") from exc


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The one verifying TLS context of the process, shared by every client: building one
    loads the CA bundle (~25 ms of CPU), which each new client did again (the bot makes a
    few at every start; the suite starts a bot per test). Honours SSL_CERT_FILE/SSL_CERT_DIR
    as httpx's default does."""
    return httpx.create_ssl_context(trust_env=True)


class UpstreamClient:
    """Base of the status-page and AppFirst clients; subclasses name their service, the
    setting that holds their URL, their credentials, and how their error bodies read."""

    service: ClassVar[str]
    url_setting: ClassVar[str]  # named when the API is not where it points
    credentials: ClassVar[str]  # "the API key": what a 401/403 says was refused

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None,
        auth: httpx.Auth | None = None,
        headers: dict[str, str] | None = None,
        secrets: tuple[str, ...] = (),
        names: tuple[str, ...] = (),
        hide: tuple[str, ...] = (),
    ) -> None:
        if not base_url:
            raise ValueError("base_url is required")
        self._base_url = api_root(base_url)
        self._configured_url = base_url
        self.observe: Observer | None = None
        self._timeout = timeout
        # Blanked, whole or in any 8-character piece, from upstream text: the client's own
        # credentials and `hide`, every other secret sitrep holds (an upstream may echo any).
        self._secrets = (*secrets, *hide)
        self._names = names  # not secrets, but nobody else's business: hidden only whole
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            auth=auth,
            headers={"Accept": "application/json", **(headers or {})},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            verify=tls_context(),
        )

    def url_of(self, path: str) -> str:
        """The full address a seed path is sent to (for messages: no credentials, no query)."""
        return public_url(self._http.base_url.join(api_path(self._configured_url, path)))

    def __repr__(self) -> str:  # never the credentials
        return f"{type(self).__name__}(base_url={self._base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the one request path -------------------------------------------------

    async def _request(
        self, method: str, path: str, *, not_found: str | None = None, expect_body: bool = True, **kwargs: Any
    ) -> Any:
        """One request, mapped to the decoded JSON of a success or to a typed error.

        ``not_found`` is the sentence for a 404 on a path naming one object (that object is
        gone); without it a 404 means the base URL is wrong."""
        path = api_path(self._configured_url, path)
        response = await send_request(self._http, self.service, self._timeout, method, path, **kwargs)
        code = response.status_code
        if not response.is_success:
            raise self._error_for(response, not_found)
        if not expect_body:
            return None
        payload = decode(response)
        if payload is NOT_JSON:
            raise UpstreamUnavailable(self.service, "it answered with something other than the documented JSON", code)
        self._check_success(payload, code)
        return payload

    def _check_success(self, payload: Any, status: int) -> None:
        """A seed whose 2xx can still carry a refusal raises it here (seed 004's envelope)."""

    def _error_for(self, response: httpx.Response, not_found: str | None) -> UpstreamError:
        """The one status→error mapping of both upstreams."""
        code = response.status_code
        message = self._upstream_message(response)
        if code in (401, 403):
            return UpstreamUnauthorized(self.service, message or f"{self.credentials} was refused (HTTP {code})", code)
        if code == 404 and not_found is not None:
            return UpstreamNotFound(self.service, not_found, code)
        if code in (404, 405):
            # Every seed path exists for its methods: the base URL points somewhere else.
            return UpstreamWrongURL(self.service, url=public_url(response.request.url), setting=self.url_setting, status=code)
        if code == 504:
            # A gateway gave up waiting on the upstream: the request went on and may have
            # been carried out (a lost reply), so a create must not simply be sent again.
            return OutcomeUnknown(self.service, message or "a gateway timed out waiting for it (HTTP 504)", code)
        if code in (408, 429) or code >= 500:
            return UpstreamUnavailable(self.service, message or f"it answered HTTP {code}", code)
        if 400 <= code < 500:
            return UpstreamRejected(self.service, message or f"it refused the request (HTTP {code})", code)
        return UpstreamUnavailable(self.service, f"it answered with an unexpected HTTP {code}", code)

    def _upstream_message(self, response: httpx.Response) -> str | None:
        """The upstream's own reason, made safe: secrets out before the cut (a cut through a
        key leaves a piece of it), control characters escaped."""
        return self._safe(self._message_in(response))

    def _safe(self, message: str | None) -> str | None:
        """Any upstream text on its way to a person or a log line goes through here."""
        if not message:
            return None
        return upstream_text(message, self._secrets, MAX_MESSAGE, whole=self._names)

    def _message_in(self, response: httpx.Response) -> str | None:
        """The seed's place for a human-readable reason in a reply; raw, redacted by the caller."""
        raise NotImplementedError
