"""How an error answers: the standard JSON body on the APIs (and Grantry's OAuth endpoints a
client calls), a page for people. Read by the middleware (apps.core.middleware) and by the
error handlers (apps.core.views), which the product error pages' middleware calls in turn,
so this sits below both and the core's modules keep one-way imports."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.html import escape

from apps.core.exceptions import ServiceUnavailable


def is_api_path(path: str) -> bool:
    """The agent and management APIs and MCP: they answer JSON, never an HTML page."""
    return path.startswith("/api/") or path == "/mcp" or path.startswith("/mcp/")


# Grantry's OAuth endpoints that a client (not a browser) calls: they answer JSON too.
_OAUTH_JSON_PATHS = frozenset({"/oauth/token/", "/oauth/revoke/", "/oauth/register/"})


def answers_json(path: str) -> bool:
    """Whether an error on this path is the standard JSON body rather than a page."""
    return is_api_path(path) or path in _OAUTH_JSON_PATHS


def unavailable_response(request: HttpRequest, exception: ServiceUnavailable) -> HttpResponse:
    """503 with `Retry-After`: the standard JSON error body for API clients, the styled
    page for people. The page is rendered with the request (the user, the org) when that
    works; with the database down it cannot, and a plain page says the same."""
    from apps.core.api import error_response

    headers = {"Retry-After": str(exception.retry_after)}
    if answers_json(request.path):
        return error_response(exception.code, exception.message, status_code=503, headers=headers)
    context = {"code": exception.code, "message": exception.message}
    try:
        response = render(request, "503.html", context, status=503)
    except Exception:  # the page's own queries failed too: no user, no organization
        response = HttpResponse(
            f"<!doctype html><title>Temporarily unavailable</title>"
            f"<h1>Temporarily unavailable</h1><p>{escape(exception.message)}</p>"
            f"<p>Error <code>{escape(exception.code)}</code>.</p>",
            status=503,
        )
    response["Retry-After"] = headers["Retry-After"]
    return response
