"""Give every request a server-generated id.

The id is echoed in the response, attached to log lines and written into
audit events, so one call can be traced across the three. A client's own
`X-Request-Id` never becomes the request id (an agent could collide with
others'); sanitised and capped, it is kept apart as `client_request_id`. Both
live in the request's audit context (apps.core.audit_context)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from urllib.parse import unquote_plus

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest

from apps.core import audit_context
from apps.core.browser_middleware import is_agent_path
from apps.core.exceptions import as_service_unavailable
from apps.core.responses import answers_json, unavailable_response


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Opens the request's audit context (apps.core.audit_context) and resets it when
    the request ends, whatever set an actor in between."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = new_request_id()
        context = audit_context.for_request(request, request_id)
        request.request_id = request_id  # type: ignore[attr-defined]
        request.client_request_id = context.client_request_id  # type: ignore[attr-defined]
        token = audit_context.bind(context)
        try:
            response = self.get_response(request)
        finally:
            audit_context.unbind(token)
        response["X-Request-Id"] = request_id
        return response


class AuditActorMiddleware:
    """After authentication: a signed-in person is the actor of the request's audit
    events. Skipped on the agent API (no session there; the agent authenticator names
    the worker). A personal-API-token call names its user in the DRF authenticator."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_agent_path(request.path_info):
            audit_context.bind_user(getattr(request, "user", None))
        return self.get_response(request)


class QueryStringGateMiddleware:
    """A NUL in a query parameter is never meant, and PostgreSQL refuses it in text and
    JSON: 400 at the door (the standard JSON body on API paths) rather than a 500 from
    whichever filter first hands it to the database. The agent API has its own gate,
    which audits the refusal under the worker's name (apps.broker.inputs)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in unquote_plus(query) and not is_agent_path(request.path_info):
            message = "Query parameters must not contain NUL (\\u0000) characters."
            if answers_json(request.path_info):
                from apps.core.api import error_response

                return error_response("invalid_input", message, status_code=400)
            return HttpResponseBadRequest(message, content_type="text/plain")
        return self.get_response(request)


class ServiceUnavailableMiddleware:
    """A `ServiceUnavailable` (e.g. the audit trail cannot be written), a database
    timeout or a dependency that is down (apps.core.exceptions.as_service_unavailable),
    raised by a view outside DRF: 503 (`unavailable_response`). DRF views map the same
    in apps.core.api.exception_handler; what a middleware raises reaches handler500
    (apps.core.views.server_error)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        unavailable = as_service_unavailable(exception)
        if unavailable is None:
            return None
        return unavailable_response(request, unavailable)


class ProductErrorPagesMiddleware:
    """With DEBUG on (`make run`), answer a 404 and an unhandled exception with
    Grantry's own pages (handler404, handler500), as production does, instead of
    Django's technical pages, which list the URL patterns and settings. The exception
    is still logged with its traceback on `django.request`, as Django logs it.

    Installed right after RequestIdMiddleware, only when DEBUG is on and
    GRANTRY_TECHNICAL_ERROR_PAGES is off (grantry/settings.py): the security and CSP
    headers still wrap its pages, and the inner middleware's own exception handling
    (503 for a dependency that is down) answers before this one."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from apps.core.views import not_found

        response = self.get_response(request)
        no_route = getattr(request, "resolver_match", None) is None
        html = response.get("Content-Type", "").startswith("text/html")
        if response.status_code == 404 and no_route and html:
            return not_found(request)  # what Django's technical 404 page would have said
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation

        from apps.core.views import not_found, server_error

        if isinstance(exception, Http404):
            return not_found(request, exception)
        if isinstance(exception, PermissionDenied | BadRequest | SuspiciousOperation):
            return None  # Django answers these with their own handlers, DEBUG or not
        logging.getLogger("django.request").error(
            "Internal Server Error: %s",
            request.path,
            exc_info=exception,
            extra={"status_code": 500, "request": request},
        )
        return server_error(request)
