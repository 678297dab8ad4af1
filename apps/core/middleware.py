"""Give every request a server-generated id.

The id is echoed in the response, attached to log lines and written into
audit events, so one call can be traced across the three. A client's own
`X-Request-Id` never becomes the request id (an agent could collide with
others'); sanitised and capped, it is kept apart as `client_request_id`. Both
live in the request's audit context (apps.core.audit_context)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.core import audit_context
from apps.core.browser_middleware import is_agent_path
from apps.core.exceptions import as_service_unavailable


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


def is_api_path(path: str) -> bool:
    """The agent and management APIs and MCP: they answer JSON, never an HTML page."""
    return path.startswith("/api/") or path == "/mcp" or path.startswith("/mcp/")


class ServiceUnavailableMiddleware:
    """A `ServiceUnavailable` (e.g. the audit trail cannot be written) or a database
    timeout raised by a view outside DRF: the standard JSON error with 503 for the APIs
    and MCP, a styled 503 page for the dashboard. DRF views map both in
    apps.core.api.exception_handler."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        from apps.core.api import error_response

        unavailable = as_service_unavailable(exception)
        if unavailable is None:
            return None
        exception = unavailable
        headers = {"Retry-After": str(exception.retry_after)}
        if is_api_path(request.path):
            return error_response(
                exception.code, exception.message, status_code=503, headers=headers
            )
        response = render(
            request,
            "503.html",
            {"code": exception.code, "message": exception.message},
            status=503,
        )
        response["Retry-After"] = headers["Retry-After"]
        return response
