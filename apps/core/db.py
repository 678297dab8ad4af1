"""PostgreSQL session timeouts: short for web requests, long for background work.

They are libpq startup options (no extra round trip per connection). Web is the
default; `manage.py` (except runserver) sets GRANTRY_DB_TIMEOUTS=background before
the settings load, and a Celery worker switches with `use_background_timeouts()`
on `celeryd_init` (grantry/celery.py). Imported by the settings: no Django imports
at module level."""

from __future__ import annotations


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
