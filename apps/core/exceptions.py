"""Exceptions every layer may raise; no app imports, so anything can import them."""

from __future__ import annotations


class ServiceUnavailable(Exception):  # named for the answer it gets
    """Something Grantry cannot work without is down: 503 with the standard body.

    Apps subclass it with their own `code` and `message` (apps.audit.exceptions).
    DRF views map it in apps.core.api.exception_handler, every other view in
    apps.core.middleware.ServiceUnavailableMiddleware, and what escapes both (a
    middleware's own query) in apps.core.views.server_error (handler500)."""

    code = "unavailable"
    message = "Grantry cannot serve this request right now. Retry shortly."
    retry_after = 5


class DatabaseTimeout(ServiceUnavailable):
    """A statement or lock wait ran into the web request's database timeout
    (settings.DB_STATEMENT_TIMEOUT_MS / DB_LOCK_TIMEOUT_MS)."""

    code = "database_timeout"
    message = "The database did not answer in time (a lock or a slow query). Retry shortly."


class DatabaseUnavailable(ServiceUnavailable):
    """PostgreSQL is down, unreachable or refused the work (connection lost, too many
    connections, a deadlock, a full disk): nothing that needs it can be done or audited."""

    code = "database_unavailable"
    message = "Grantry's database is not available. Retry shortly."


class CacheUnavailable(ServiceUnavailable):
    """The shared cache (Redis) is down. It counts rate limits, quotas and failed
    authentications; a check that cannot count refuses (README, "When Redis or
    PostgreSQL is down")."""

    code = "cache_unavailable"
    message = (
        "Grantry's shared cache, which counts rate limits, quotas and failed "
        "authentications, is not available. Retry shortly."
    )


class BrokerUnavailable(ServiceUnavailable):
    """The task queue (Redis in production) did not take a task."""

    code = "broker_unavailable"
    message = "Grantry's task queue is not available. Retry shortly."


# PostgreSQL: query_canceled (statement_timeout) and lock_not_available (lock_timeout).
_TIMEOUT_SQLSTATES = frozenset({"57014", "55P03"})


def as_service_unavailable(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 this exception deserves: itself, a database timeout, a dependency that is
    down (PostgreSQL, the cache, the task queue), or None."""
    if isinstance(exc, ServiceUnavailable):
        return exc
    cause = exc.__cause__
    if getattr(cause, "sqlstate", None) in _TIMEOUT_SQLSTATES:
        return DatabaseTimeout()
    # Imported here: settings import this module before Django is set up.
    import kombu.exceptions
    import redis.exceptions
    from django.db import InterfaceError, OperationalError
    from django_redis.exceptions import ConnectionInterrupted

    if isinstance(exc, OperationalError | InterfaceError):
        return DatabaseUnavailable()
    if isinstance(exc, ConnectionInterrupted | redis.exceptions.ConnectionError):
        return CacheUnavailable()
    if isinstance(exc, kombu.exceptions.OperationalError):
        return BrokerUnavailable()
    return None
