"""The PostgreSQL of `make run` and of `make test` without a reachable DATABASE_URL.

pgserver ships PostgreSQL 16 in a pip wheel. The data lives in `<var>/pgdata`, the
server listens only on a Unix socket, and every process that calls `start()` holds
a handle on it: the server stops when the last of them exits (pgserver counts the
handles in `pgdata/.handle_pids.json`), so `make run` and a test run can share it.
Running as root works: pgserver runs the server as its own `pgserver` system user.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Embedded:
    server: Any  # pgserver.PostgresServer
    url: str  # DATABASE_URL of the database asked for

    @property
    def pid(self) -> int | None:
        return self.server.get_pid()

    def stop(self) -> None:
        """Let go of this process's handle: stops the server if it was the last."""
        self.server.cleanup()


def _forget_dead_handles(pgdata: Path) -> None:
    """A process killed with SIGKILL never gives its handle back, and then no later
    run would be the last one to stop the server: drop the handles of dead processes."""
    import psutil

    handles = pgdata / ".handle_pids.json"
    if handles.is_file():
        pids = json.loads(handles.read_text() or "[]")
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def start(var_dir: Path, database: str = "grantry") -> Embedded:
    """Start (or join) the server under `var_dir` and create `database` if it is missing.

    The URL has the form `postgresql://postgres:@/<db>?host=<socket dir>`: psycopg reads
    it as is, and django-environ turns `?host=` into the connection's OPTIONS."""
    import warnings

    # platformdirs warns that XDG_RUNTIME_DIR is unset (containers, CI) and uses /tmp.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    import pgserver
    import psycopg
    from psycopg import sql

    var_dir.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(var_dir / "pgdata")
    server = pgserver.get_server(var_dir / "pgdata", cleanup_mode="stop")
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if found is None:
            # Another process sharing the server may have created it meanwhile.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return Embedded(server=server, url=server.get_uri(database))
