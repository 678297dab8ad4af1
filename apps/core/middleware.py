"""Give every request a server-generated id.

The id is echoed in the response, attached to log lines and written into
audit events, so one call can be traced across the three. A client's own
`X-Request-Id` never becomes the request id (an agent could collide with
others'); sanitised and capped, it is kept apart as `client_request_id`."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.core.exceptions import as_service_unavailable

current_request_id: ContextVar[str] = ContextVar("current_request_id", default="-")
# What the client sent as X-Request-Id (sanitised), for audit metadata only.
current_client_request_id: ContextVar[str] = ContextVar("current_client_request_id", default="")
CLIENT_REQUEST_ID_MAX = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._:/+=@-]")


def new_request_id() -> str:
    return uuid.uuid4().hex


def sanitize_client_request_id(value: str) -> str:
    """Printable, harmless characters only (others dropped), at most 64 of them."""
    return _UNSAFE.sub("", value[: CLIENT_REQUEST_ID_MAX * 4])[:CLIENT_REQUEST_ID_MAX]


def client_request_metadata() -> dict[str, str]:
    """`{"client_request_id": …}` when the client sent one: for audit event metadata."""
    client_id = current_client_request_id.get()
    return {"client_request_id": client_id} if client_id else {}


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = new_request_id()
        client_id = sanitize_client_request_id(request.headers.get("X-Request-Id", ""))
        request.request_id = request_id  # type: ignore[attr-defined]
        request.client_request_id = client_id  # type: ignore[attr-defined]
        token = current_request_id.set(request_id)
        client_token = current_client_request_id.set(client_id)
        try:
            response = self.get_response(request)
        finally:
            current_client_request_id.reset(client_token)
            current_request_id.reset(token)
        response["X-Request-Id"] = request_id
        return response


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
