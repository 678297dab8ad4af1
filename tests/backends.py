"""Which PostgreSQL and Redis the test run uses (see grantry/settings_test.py).

PostgreSQL: DATABASE_URL when it answers, else the embedded server of `make run`
(scripts/embedded_postgres.py, data under the var directory, shared with `make run`).
Redis: REDIS_URL when it answers, else the local-memory cache and broker.
GRANTRY_REQUIRE_SERVICES=1 (CI) turns a service that does not answer into a hard
failure instead of a fallback."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Backends:
    database_url: str
    embedded: bool
    redis_url: str | None

    def describe(self) -> str:
        db = "embedded PostgreSQL (pgserver, var/pgdata)" if self.embedded else "PostgreSQL"
        redis = "Redis" if self.redis_url else "in-memory (no Redis)"
        return f"Grantry test backends: database={db}, cache/broker={redis}"


def _postgres_answers(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url, dbname="postgres", connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def probe_backends(var_dir: Path) -> Backends:
    db_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    database_ok = bool(db_url) and _postgres_answers(db_url)
    redis_ok = bool(redis_url) and _redis_answers(redis_url)
    if os.environ.get("GRANTRY_REQUIRE_SERVICES") == "1" and not (database_ok and redis_ok):
        raise SystemExit(
            "GRANTRY_REQUIRE_SERVICES=1 but PostgreSQL or Redis did not answer "
            f"(DATABASE_URL={db_url!r}, REDIS_URL={redis_url!r})."
        )
    if not database_ok:
        from scripts.embedded_postgres import start

        db_url = start(var_dir).url
    return Backends(
        database_url=db_url, embedded=not database_ok, redis_url=redis_url if redis_ok else None
    )


def database_url(settings_dict: dict[str, Any]) -> str:
    """A DATABASE_URL for another process to reach the database Django uses here
    (the test database once it exists), over TCP or the embedded server's socket."""
    user = settings_dict.get("USER") or "postgres"
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    name = settings_dict["NAME"]
    socket_dir = settings_dict.get("OPTIONS", {}).get("host")
    if not settings_dict.get("HOST") and socket_dir:
        return f"postgresql://{user}{password}@/{name}?host={socket_dir}"
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{name}"
