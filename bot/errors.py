"""Typed errors for the two upstream APIs (status page, AppFirst).

Handlers catch these to tell the user *what* went wrong without a traceback:
``str(err)`` is always a sentence that can be posted to Slack as-is, and
``err.message`` keeps the upstream wording (e.g. ``Title is required.``)
so it can be shown verbatim.  Nothing here ever carries credentials: the
clients pass every upstream text through :func:`scrub` before raising.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import httpx

__all__ = [
    "UpstreamError",
    "UpstreamRejected",
    "UpstreamNotFound",
    "UpstreamUnauthorized",
    "UpstreamUnavailable",
    "UpstreamWrongURL",
    "public_url",
    "scrub",
    "send_request",
]

_REDACTED = "[redacted]"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Blank out any secret an upstream echoed back, so it never reaches Slack or logs."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, _REDACTED)
    return text


def public_url(url: httpx.URL | str) -> str:
    """A URL fit for a message or a log line: no user:password part, no query."""
    parsed = httpx.URL(str(url))
    return str(parsed.copy_with(username=None, password=None, query=None, fragment=None))


def _subject(service: str) -> str:
    # "status page" reads as "The status page ...", a product name stays bare.
    return f"The {service}" if service[:1].islower() else service


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    return text if text[-1] in ".!?" else text + "."


class UpstreamError(Exception):
    """Base class: an upstream call did not do what was asked."""

    def __init__(self, service: str, message: str, status: int | None = None) -> None:
        self.service = service
        self.message = message
        self.status = status
        super().__init__(message)

    def __str__(self) -> str:
        return _sentence(f"{_subject(self.service)} returned an error: {self.message}")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(service={self.service!r}, "
            f"message={self.message!r}, status={self.status!r})"
        )


class UpstreamRejected(UpstreamError):
    """The upstream understood the request and refused it (HTTP 400, or 200 with Success=false).

    Not worth retrying: the user has to change what they asked for.
    """

    def __str__(self) -> str:
        return _sentence(f"{_subject(self.service)} rejected the request: {self.message}")


class UpstreamNotFound(UpstreamRejected):
    """The object named in the request does not exist upstream (HTTP 404)."""

    def __str__(self) -> str:
        return _sentence(f"{_subject(self.service)} reported: {self.message}")


class UpstreamUnauthorized(UpstreamError):
    """The configured credentials were refused (HTTP 401/403): an operator must fix config."""

    def __str__(self) -> str:
        return _sentence(
            f"{_subject(self.service)} refused the configured credentials: "
            f"{_sentence(self.message)} Check the bot's configuration"
        )


class UpstreamWrongURL(UpstreamError):
    """Nothing answers the seed's path at the configured address (HTTP 404/405 on a path every
    such API has): the base URL is wrong. An operator must fix `setting`; retrying is no use.

    ``url`` is the address that was tried, without credentials, so the operator sees it.
    """

    def __init__(self, service: str, *, url: str, setting: str, status: int) -> None:
        self.url = url
        self.setting = setting
        # `message` is what a person may see; the URL and the setting are for the operator.
        super().__init__(service, f"its API was not found at the configured URL (HTTP {status})", status)

    def __str__(self) -> str:
        return _sentence(
            f"{_subject(self.service)} API was not found at the configured URL "
            f"(HTTP {self.status} from {self.url}). Check {self.setting}"
        )


class UpstreamUnavailable(UpstreamError):
    """The upstream could not answer usefully (5xx, timeout, no connection, bad body).

    Usually transient: the action may be retried later.
    """

    def __str__(self) -> str:
        return _sentence(
            f"{_subject(self.service)} is not available right now: "
            f"{_sentence(self.message)} Please try again later"
        )


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
    """
    try:
        async with asyncio.timeout(timeout):
            return await client.request(method, url, **kwargs)
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise UpstreamUnavailable(service, f"no reply within {timeout:g} seconds") from exc
    except httpx.UnsupportedProtocol as exc:
        raise UpstreamUnavailable(service, "its configured URL is not an http(s) URL") from exc
    except httpx.ConnectError as exc:
        raise UpstreamUnavailable(service, "could not connect to it") from exc
    except httpx.TransportError as exc:
        raise UpstreamUnavailable(service, "the connection failed mid-request") from exc
