"""PostgreSQL session timeouts: short for web requests, long for background work; and
giving a connection back while a request waits (`connections_release`).

They are libpq startup options (no extra round trip per connection). Web is the
default; `manage.py` (except runserver) sets GRANTRY_DB_TIMEOUTS=background before
the settings load, and a Celery worker switches with `use_background_timeouts()`
on `celeryd_init` (grantry/celery.py). Imported by the settings: no Django imports
at module level."""

from __future__ import annotations

from typing import Any


def timeout_options(
    *,
    background: bool,
    statement_ms: int,
    lock_ms: int,
    background_statement_ms: int,
    background_lock_ms: int,
) -> str:
    """The libpq `options` string setting statement_timeout and lock_timeout (0 = none)."""
    if background:
        statement_ms, lock_ms = background_statement_ms, background_lock_ms
    return f"-c statement_timeout={int(statement_ms)} -c lock_timeout={int(lock_ms)}"


def use_background_timeouts() -> None:
    """Switch this process to the background timeouts: new connections get them, and
    connections already open are closed so that none keeps the web values."""
    from django.conf import settings
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        connection.close()
    for alias in connections:
        wrapper: Any = connections[alias]
        if getattr(wrapper, "pool", None) is not None:
            wrapper.close_pool()  # its connections were made with the web values
        settings_dict = connections[alias].settings_dict
        if not settings_dict["ENGINE"].endswith("postgresql"):
            continue
        settings_dict.setdefault("OPTIONS", {})["options"] = timeout_options(
            background=True,
            statement_ms=settings.DB_STATEMENT_TIMEOUT_MS,
            lock_ms=settings.DB_LOCK_TIMEOUT_MS,
            background_statement_ms=settings.DB_BACKGROUND_STATEMENT_TIMEOUT_MS,
            background_lock_ms=settings.DB_BACKGROUND_LOCK_TIMEOUT_MS,
        )


def connections_release(*, only_pooled: bool = False) -> None:
    """Give this thread's database connections back before it waits (an upstream, a
    long poll), never inside a transaction (a test's wrapping one stays intact). With
    Django's connection pool (settings: DB_POOL_MAX_SIZE) a closed connection goes back
    to the pool and the next query takes one again; `only_pooled` leaves a persistent
    unpooled connection alone (closing it would cost a new connection per call)."""
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block:
            continue
        if only_pooled and getattr(connection, "pool", None) is None:
            continue
        connection.close()
