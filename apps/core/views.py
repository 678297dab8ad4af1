from __future__ import annotations

import sys

from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django.views.defaults import page_not_found
from django.views.defaults import server_error as django_server_error


def _database_ok() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "down"
        return False, type(exc).__name__
    return True, connection.vendor


def _broker_ok() -> tuple[bool, str]:
    from celery import current_app as app  # the project's (grantry/celery.py), set at startup

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            transport = conn.transport_cls
    except Exception as exc:
        return False, type(exc).__name__
    return True, str(transport)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness plus the two dependencies: `?checks=0` skips them (for benchmarks)."""
    if request.GET.get("checks") == "0":
        return JsonResponse({"status": "ok"})
    from apps.core.tasks import heartbeat_age_seconds

    db_ok, db_info = _database_ok()
    broker_ok, broker_info = _broker_ok()
    ok = db_ok and broker_ok
    return JsonResponse(
        {
            "status": "ok" if ok else "degraded",
            "database": {"ok": db_ok, "info": db_info},
            "broker": {"ok": broker_ok, "info": broker_info},
            # Informational: seconds since a worker last ran the scheduler's heartbeat.
            "scheduler": {"last_heartbeat_age_seconds": heartbeat_age_seconds()},
        },
        status=200 if ok else 503,
    )


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 for URLs no route matches (handler404). Under /api/ it is the standard
    JSON error body, like every other API error; elsewhere Django's page."""
    if request.path.startswith("/api/"):
        from apps.core.api import error_response

        return error_response("not_found", "Not found.", status_code=404)
    return page_not_found(request, exception or Http404())


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: what no view or middleware answered. A dependency that is down
    (a middleware's query with PostgreSQL gone, the cache, the queue) is 503 with
    `Retry-After`; any other error is the standard JSON body on the APIs and Django's
    page elsewhere. Django calls this inside its `except` block, so `sys.exc_info()`
    is the exception."""
    from apps.core.api import error_response
    from apps.core.exceptions import as_service_unavailable
    from apps.core.responses import answers_json, unavailable_response

    exception = sys.exc_info()[1]
    unavailable = as_service_unavailable(exception) if exception is not None else None
    if unavailable is not None:
        return unavailable_response(request, unavailable)
    if answers_json(request.path):
        return error_response(
            "server_error", "Grantry failed to answer this request.", status_code=500
        )
    return django_server_error(request)
