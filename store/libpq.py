"""`DATABASE_URL` as managed PostgreSQL services hand it out (`?sslmode=require` and the other
libpq query parameters), turned into what the asyncpg driver takes: SQLAlchemy passes a URL's
query to the driver as keyword arguments, and asyncpg has no `sslmode`, `sslrootcert`, … ones.

A parameter sitrep cannot honour is refused, never dropped: a dropped `sslcrl` or
`target_session_attrs` would quietly weaken what the operator asked for."""

from __future__ import annotations

import ssl
from typing import Any

from sqlalchemy.engine import URL

#: libpq's sslmode values (https://www.postgresql.org/docs/current/libpq-ssl.html).
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
HONOURED = ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name")


class ParameterRefused(ValueError):
    """`str()` completes "DATABASE_URL …" in one line; it never holds the URL (a password)."""


def driver_arguments(url: URL) -> tuple[URL, dict[str, Any]]:
    """The URL without its libpq query, and asyncpg's `connect()` arguments for it."""
    query = {key: (value[-1] if isinstance(value, tuple) else value) for key, value in url.query.items()}
    unknown = sorted(set(query) - set(HONOURED))
    if unknown:
        raise ParameterRefused(
            f"has {', '.join(unknown)}, which sitrep cannot pass to PostgreSQL (it takes {', '.join(HONOURED)}): "
            "remove it from the URL"
        )
    connect: dict[str, Any] = {}
    tls = _tls(query)
    if tls is not None:
        connect["ssl"] = tls
    if "connect_timeout" in query:
        seconds = query["connect_timeout"]
        if not seconds.isdigit():
            raise ParameterRefused("has connect_timeout that is not a whole number of seconds")
        # libpq: 0 means wait forever; sitrep always bounds a connection attempt, so 0 keeps
        # asyncpg's own bound (60 s).
        if int(seconds) > 0:
            connect["timeout"] = float(seconds)
    if query.get("application_name"):
        connect["server_settings"] = {"application_name": query["application_name"]}
    return url.set(query={}), connect


def _tls(query: dict[str, str]) -> ssl.SSLContext | str | bool | None:
    """asyncpg's `ssl` argument for libpq's sslmode and certificate files."""
    mode = query.get("sslmode")
    if mode is not None and mode not in SSL_MODES:
        raise ParameterRefused(f"has sslmode={mode}, which is not one of {', '.join(SSL_MODES)}")
    root, cert, key = query.get("sslrootcert"), query.get("sslcert"), query.get("sslkey")
    if mode == "disable":
        return False
    if mode == "require" and root:
        mode = "verify-ca"  # libpq: require with a root certificate verifies the server's
    if mode in (None, "allow", "prefer") and not (cert or key):
        return mode  # asyncpg's own prefer/allow; None: its default, which is prefer
    context = ssl.create_default_context()
    if mode in ("verify-ca", "verify-full"):
        # assumption: without sslrootcert the system's CAs are trusted (libpq would want
        # ~/.postgresql/root.crt, which a container rarely has).
        if root:
            _load(lambda: context.load_verify_locations(cafile=root), "sslrootcert", root)
        context.check_hostname = mode == "verify-full"
    else:  # require (or allow/prefer with a client certificate): encrypted, not verified
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert or key:
        if not (cert and key):
            raise ParameterRefused("has only one of sslcert and sslkey; a client certificate needs both")
        _load(lambda: context.load_cert_chain(cert, key), "sslcert/sslkey", f"{cert}, {key}")
    return context


def _load(step, parameter: str, where: str) -> None:
    try:
        step()
    except (OSError, ssl.SSLError) as exc:
        raise ParameterRefused(f"has {parameter} that cannot be read as a certificate ({where}: {exc})") from None
