"""Exceptions every layer may raise; no imports, so anything can import them."""

from __future__ import annotations


class ServiceUnavailable(Exception):  # named for the answer it gets
    """Something Grantry cannot work without is down: 503 with the standard body.

    Apps subclass it with their own `code` and `message` (apps.audit.exceptions).
    DRF views map it in apps.core.api.exception_handler, every other view in
    apps.core.middleware.ServiceUnavailableMiddleware."""

    code = "unavailable"
    message = "Grantry cannot serve this request right now. Retry shortly."
    retry_after = 5


class DatabaseTimeout(ServiceUnavailable):
    """A statement or lock wait ran into the web request's database timeout
    (settings.DB_STATEMENT_TIMEOUT_MS / DB_LOCK_TIMEOUT_MS)."""

    code = "database_timeout"
    message = "The database did not answer in time (a lock or a slow query). Retry shortly."


# PostgreSQL: query_canceled (statement_timeout) and lock_not_available (lock_timeout).
_TIMEOUT_SQLSTATES = frozenset({"57014", "55P03"})


def as_service_unavailable(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 this exception deserves: itself, a database timeout, or None."""
    if isinstance(exc, ServiceUnavailable):
        return exc
    cause = exc.__cause__
    if getattr(cause, "sqlstate", None) in _TIMEOUT_SQLSTATES:
        return DatabaseTimeout()
    return None
