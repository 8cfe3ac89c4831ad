"""`DATABASE_URL` as managed PostgreSQL hands it out: libpq's query parameters (`sslmode`,
`sslrootcert`, `sslcert`, `sslkey`, `connect_timeout`, `application_name`) and the `postgres://`
scheme, against a PostgreSQL the suite starts with TLS on and a self-signed certificate."""

from __future__ import annotations

import asyncio
import ssl

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from store.db import Database, DatabaseUnusable
from store.libpq import ParameterRefused, driver_arguments
from tests.support.process import lines_starting, sitrep
from tests.support.tls_postgres import CERT_USER, TlsPostgres, server_binaries

# --- the mapping, on its own ---------------------------------------------------------------------


def args(query: str) -> dict:
    return driver_arguments(make_url(f"postgresql+asyncpg://u:p@db.example.com/sitrep?{query}"))[1]


def test_the_query_is_taken_off_the_url():
    url, connect = driver_arguments(make_url("postgresql+asyncpg://u:p@db/sitrep?sslmode=require&application_name=x"))
    assert url.query == {} and url.password == "p" and set(connect) == {"ssl", "server_settings"}


def test_sslmode_maps_onto_the_driver():
    assert args("sslmode=disable") == {"ssl": False}
    assert args("sslmode=prefer") == {"ssl": "prefer"} and args("sslmode=allow") == {"ssl": "allow"}
    required = args("sslmode=require")["ssl"]
    assert isinstance(required, ssl.SSLContext) and required.verify_mode == ssl.CERT_NONE and not required.check_hostname
    full = args("sslmode=verify-full")["ssl"]
    assert full.verify_mode == ssl.CERT_REQUIRED and full.check_hostname
    ca = args("sslmode=verify-ca")["ssl"]
    assert ca.verify_mode == ssl.CERT_REQUIRED and not ca.check_hostname


def test_timeout_and_application_name():
    assert args("connect_timeout=7&application_name=sitrep-prod") == {
        "timeout": 7.0,
        "server_settings": {"application_name": "sitrep-prod"},
    }
    assert args("connect_timeout=0") == {}  # libpq: wait forever; asyncpg keeps its own bound


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("target_session_attrs=read-write", "has target_session_attrs, which sitrep cannot pass to PostgreSQL"),
        ("sslmode=sometimes", "has sslmode=sometimes, which is not one of disable, allow"),
        ("connect_timeout=soon", "connect_timeout that is not a whole number"),
        ("sslmode=require&sslcert=/tmp/a.crt", "only one of sslcert and sslkey"),
        (
            "sslmode=verify-ca&sslrootcert=/nonexistent/root.crt",
            "sslrootcert that cannot be read as a certificate (/nonexistent/root.crt",
        ),
    ],
)
def test_what_cannot_be_honoured_is_one_clear_line(query, says):
    with pytest.raises(ParameterRefused) as refused:
        args(query)
    assert says in str(refused.value) and "\n" not in str(refused.value) and ":p@" not in str(refused.value)
    with pytest.raises(DatabaseUnusable) as unusable:
        Database(f"postgresql://u:secret-pw@db.example.com/sitrep?{query}")
    assert says in str(unusable.value) and "secret-pw" not in str(unusable.value)


def test_a_parameter_it_cannot_honour_is_listed_with_the_runs_other_problems(base_env, tmp_path):
    """Read with the settings: one run names the URL's parameter and the missing variables."""
    url = "postgres://u:secret-pw@db.example.com/sitrep?sslmode=require&target_session_attrs=read-write"
    done = sitrep("run", env=base_env | {"DATABASE_URL": url}, cwd=tmp_path)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines_starting(done.stderr, "sitrep: SLACK_BOT_TOKEN is required")
    assert lines_starting(done.stderr, "sitrep: SITREP_CHANNEL is required")
    (line,) = lines_starting(done.stderr, "sitrep: DATABASE_URL has target_session_attrs")
    assert line.endswith("remove it from the URL.") and "secret-pw" not in done.stderr, done.stderr
    assert all(line.startswith("sitrep: ") for line in lines), done.stderr


# --- against a PostgreSQL with TLS on ------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_postgres():
    if server_binaries() is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine to start one with TLS")
    with TlsPostgres() as server:
        yield server


async def _session_facts(url: str) -> tuple[bool, str]:
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT ssl, current_setting('application_name') FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                )
            ).one()
        return bool(row[0]), str(row[1])
    finally:
        await db.dispose()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_sslmode_require_connects_over_tls(tls_postgres, scheme):
    url = tls_postgres.url(scheme, sslmode="require", connect_timeout="10", application_name="sitrep-test")
    assert asyncio.run(_session_facts(url)) == (True, "sitrep-test")


def test_verify_full_trusts_the_given_root_certificate(tls_postgres):
    url = tls_postgres.url(host="localhost", sslmode="verify-full", sslrootcert=str(tls_postgres.cert))
    assert asyncio.run(_session_facts(url))[0] is True


def test_a_client_certificate_is_sent_with_sslcert_and_sslkey(tls_postgres, tmp_path):
    """The role may log in only with a certificate the server's signed (pg_hba `cert`): without
    sslcert and sslkey it is refused; with them it is in, as that certificate's subject."""
    cert, key = tls_postgres.client_certificate(tmp_path)
    with pytest.raises(DatabaseUnusable):
        asyncio.run(Database(tls_postgres.url(user=CERT_USER, sslmode="require")).prepare())
    url = tls_postgres.url(user=CERT_USER, sslmode="require", sslcert=str(cert), sslkey=str(key))
    assert asyncio.run(_client_dn(url)) == (CERT_USER, f"/CN={CERT_USER}")


async def _client_dn(url: str) -> tuple[str, str]:
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            query = "SELECT current_user, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            row = (await conn.execute(text(query))).one()
        return str(row[0]), str(row[1])
    finally:
        await db.dispose()


def test_verify_ca_refuses_a_server_the_root_does_not_vouch_for(tls_postgres, tmp_path):
    other = tmp_path / "other.crt"
    import subprocess  # noqa: PLC0415 - only this test makes a second certificate

    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other",
         "-keyout", str(tmp_path / "other.key"), "-out", str(other)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with pytest.raises(DatabaseUnusable) as refused:
        asyncio.run(Database(tls_postgres.url(sslmode="verify-ca", sslrootcert=str(other))).prepare())
    assert "cannot be opened or written" in str(refused.value) and "CERTIFICATE_VERIFY_FAILED" in str(refused.value)


def test_sslmode_disable_is_refused_by_a_server_that_wants_tls(tls_postgres):
    """The server lets only TLS in: the test above connecting proves TLS was used."""
    with pytest.raises(DatabaseUnusable) as refused:
        asyncio.run(Database(tls_postgres.url(sslmode="disable")).prepare())
    assert "cannot be opened or written" in str(refused.value)


def test_check_and_migrate_take_the_url_people_paste(tls_postgres, full_env, tmp_path):
    env = full_env | {"DATABASE_URL": tls_postgres.url("postgres", sslmode="require", connect_timeout="10")}
    done = sitrep("check", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines_starting(done.stdout, "database: ok")
    migrated = sitrep("migrate", env=env, cwd=tmp_path)
    assert migrated.returncode == 0 and migrated.stdout.startswith("database: at revision"), migrated.stderr
    assert "Traceback" not in done.stderr + migrated.stderr


def test_a_parameter_sitrep_cannot_honour_stops_run_in_one_line(tls_postgres, full_env, tmp_path):
    env = full_env | {"DATABASE_URL": tls_postgres.url(sslmode="require", target_session_attrs="read-write")}
    done = sitrep("run", env=env, cwd=tmp_path)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sitrep: DATABASE_URL has target_session_attrs"), done.stderr
