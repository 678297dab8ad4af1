"""Find out which real services answer for the test run (see settings_test)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Backends:
    database_url: str | None
    redis_url: str | None

    def describe(self) -> str:
        db = "PostgreSQL" if self.database_url else "SQLite (in memory)"
        redis = "Redis" if self.redis_url else "in-memory (no Redis)"
        return f"Grantry test backends: database={db}, cache/broker={redis}"


def _postgres_answers(url: str) -> bool:
    import environ
    import psycopg

    cfg = environ.Env.db_url_config(url)
    if "postgres" not in cfg["ENGINE"]:
        return False
    try:
        psycopg.connect(
            host=cfg.get("HOST") or "127.0.0.1",
            port=int(cfg.get("PORT") or 5432),
            user=cfg.get("USER") or "postgres",
            password=cfg.get("PASSWORD") or None,
            dbname="postgres",
            connect_timeout=2,
        ).close()
    except psycopg.Error:
        return False
    return True


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def probe_backends() -> Backends:
    db_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    found = Backends(
        database_url=db_url if db_url and _postgres_answers(db_url) else None,
        redis_url=redis_url if redis_url and _redis_answers(redis_url) else None,
    )
    if os.environ.get("GRANTRY_REQUIRE_SERVICES") == "1" and (
        found.database_url is None or found.redis_url is None
    ):
        raise SystemExit(
            "GRANTRY_REQUIRE_SERVICES=1 but PostgreSQL or Redis did not answer "
            f"(DATABASE_URL={db_url!r}, REDIS_URL={redis_url!r}). " + found.describe()
        )
    return found
