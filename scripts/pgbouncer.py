"""A real PgBouncer (Debian's `pgbouncer`, installed by `make pgbouncer`) in
transaction-pooling mode in front of PostgreSQL, for the tests, the bench and
`make cluster` (scripts/cluster.py).

It listens on a free port of 127.0.0.1 and passes every database through to the
server Django uses (trust authentication, as the test PostgreSQL has). PgBouncer 1.18
does not pass the `options` startup parameter on (Grantry's web statement and lock
timeouts travel there), so it is ignored here: behind PgBouncer 1.18 set those
timeouts on the role or the database instead (docs/architecture.md). psycopg's
server-side prepared statements, which transaction pooling would break, are off:
Django's PostgreSQL backend sets `prepare_threshold` to None unless told otherwise.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgBouncer:
    """`with PgBouncer() as bouncer:` then `bouncer.url(database_url)` points a
    DATABASE_URL at it. Its files live in a directory of its own under /tmp: PgBouncer
    refuses to run as root, so as root it runs as an unprivileged account (`-u`),
    which must be able to read them."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 5432,
        user: str = "postgres",
        pool_size: int = 20,
        run_as: str | None = None,  # as root: the account to run as (default: postgres)
    ) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="grantry-pgbouncer-"))
        self.run_as = (run_as or _unprivileged()) if os.geteuid() == 0 else None
        self.port = _free_port()
        self.user = user
        (self.workdir / "users.txt").write_text(f'"{user}" ""\n')
        self.config = self.workdir / "pgbouncer.ini"
        self.config.write_text(
            "[databases]\n"
            f"* = host={host} port={port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.workdir / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 1000\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            "server_reset_query =\n"
            f"logfile = {self.workdir / 'pgbouncer.log'}\n"
            f"pidfile = {self.workdir / 'pgbouncer.pid'}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PgBouncer:
        if not Path(BINARY).exists():
            raise RuntimeError("pgbouncer is not installed: run `make pgbouncer`")
        argv = [BINARY, str(self.config)]
        if self.run_as is not None:
            account = pwd.getpwnam(self.run_as)
            for path in [self.workdir, *self.workdir.iterdir()]:
                os.chown(path, account.pw_uid, account.pw_gid)
            argv[1:1] = ["-u", self.run_as]
        self.process = subprocess.Popen(  # fixed argv
            argv,
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "stderr.log").open("wb"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not listen: {self.log()}")

    def log(self) -> str:
        texts = []
        for name in ("pgbouncer.log", "stderr.log"):
            path = self.workdir / name
            if path.exists():
                texts.append(path.read_text(errors="replace")[-2000:])
        return "\n".join(texts)

    def url(self, database_url: str) -> str:
        """The same DATABASE_URL, through this PgBouncer."""
        parts = urlsplit(database_url)
        netloc = f"{parts.username or self.user}@127.0.0.1:{self.port}"
        # A `?host=` (the embedded server's socket directory) would win over the netloc.
        query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("host="))
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))

    def _terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> PgBouncer:
        """Stop and start again on the same port (every client connection is cut)."""
        self._terminate()
        return self.start()

    def stop(self) -> None:
        self._terminate()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _unprivileged() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("no unprivileged account to run pgbouncer as")
