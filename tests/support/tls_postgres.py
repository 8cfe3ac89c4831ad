"""A PostgreSQL of the suite's own with TLS on and a self-signed certificate, for the
`DATABASE_URL` libpq parameters (`sslmode=require`, …) that managed PostgreSQL hands out.

Built from the machine's PostgreSQL binaries (`initdb`, `pg_ctl`; CI has the distro's), on a
free port, in a folder of its own, removed at the end. Only TLS connections are let in
(`hostnossl … reject`), so a test that connects proves TLS was used. initdb refuses to run as
root: as root, the server runs as the `postgres` user (`runuser`)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.harness import free_port

ROOTS = (Path("/usr/lib/postgresql"), Path("/usr/local/pgsql"))
#: The role that may log in only with a client certificate (pg_hba `cert`).
CERT_USER = "sitrep_cert"


def server_binaries() -> Path | None:
    """The newest folder holding both initdb and pg_ctl, or None."""
    found = []
    for root in ROOTS:
        candidates = sorted(root.glob("*/bin"), reverse=True) + [root / "bin"] if root.is_dir() else []
        found += [c for c in candidates if (c / "initdb").exists() and (c / "pg_ctl").exists()]
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        found.append(Path(on_path).parent)
    return found[0] if found else None


class TlsPostgres:
    """`with TlsPostgres() as pg:` — `pg.url(**query)` reaches it as user postgres, database postgres."""

    def __init__(self) -> None:
        binaries = server_binaries()
        if binaries is None:
            raise FileNotFoundError("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
        self.bin = binaries
        self.port = free_port()
        self.home = Path(tempfile.mkdtemp(prefix="sitrep-tls-pg-"))
        self.data = self.home / "data"
        self.cert = self.home / "server.crt"
        self.key = self.home / "server.key"
        self._user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    def _run(self, *args: str | Path, timeout: float = 120) -> None:
        command = [str(a) for a in args]
        if self._user is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def start(self) -> TlsPostgres:
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
                "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout", str(self.key), "-out", str(self.cert),
            ],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        self.key.chmod(0o600)
        if self._user is not None:
            self.home.chmod(0o755)  # the test process (root) reads the certificate too
            for path in (self.home, self.cert, self.key):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        self._run(self.bin / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        # CERT_USER gets in only with a client certificate the server's own one signed
        # (`sslcert`, `sslkey`); everyone else over TLS alone.
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"hostssl all {CERT_USER} 127.0.0.1/32 cert\n"
            "hostssl all all 127.0.0.1/32 trust\n"
            "hostnossl all all 127.0.0.1/32 reject\n"
        )
        options = (
            f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c ssl=on "
            f"-c ssl_cert_file={self.cert} -c ssl_key_file={self.key} -c ssl_ca_file={self.cert}"
        )
        self._run(self.bin / "pg_ctl", "-D", self.data, "-o", options, "-l", self.home / "server.log", "-w", "-t", "60", "start")
        self._run(self.bin / "createuser", "-h", self.home, "-p", str(self.port), "-U", "postgres", CERT_USER)
        return self

    def client_certificate(self, folder: Path, user: str = CERT_USER) -> tuple[Path, Path]:
        """A client certificate (and its key) for `user`, signed by the server's certificate."""
        key, request, cert = folder / f"{user}.key", folder / f"{user}.csr", folder / f"{user}.crt"
        for command in (
            ["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={user}",
             "-keyout", str(key), "-out", str(request)],
            ["openssl", "x509", "-req", "-in", str(request), "-CA", str(self.cert), "-CAkey", str(self.key),
             "-CAcreateserial", "-CAserial", str(folder / "ca.srl"), "-days", "1", "-out", str(cert)],
        ):  # fmt: skip
            subprocess.run(command, check=True, capture_output=True, timeout=60)
        return cert, key

    def stop(self) -> None:
        try:
            self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", timeout=60)
        finally:
            shutil.rmtree(self.home, ignore_errors=True)

    def url(self, scheme: str = "postgresql", host: str = "127.0.0.1", user: str = "postgres", **query: str) -> str:
        tail = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{scheme}://{user}@{host}:{self.port}/postgres" + (f"?{tail}" if tail else "")

    def __enter__(self) -> TlsPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
