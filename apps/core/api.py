"""The one JSON error shape and the pagination every Grantry API uses.

Every error, from DRF validation to a broker denial, answers:

    {"error": {"code": "...", "message": "...", "details": {...}, "request_id": "..."}}
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.core.exceptions import as_service_unavailable
from apps.core.middleware import current_request_id


class Pagination(CursorPagination):
    """Keyset pagination: stable and fast however large the table grows."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = "-id"


class APIError(exceptions.APIException):
    """Raise with an explicit code, message, status and optional details."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status_code: int = status.HTTP_400_BAD_REQUEST,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.message = message
        self.details = details or {}
        self.extra_headers = headers or {}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details or {},
            "request_id": current_request_id.get(),
        }
    }


def error_response(
    code: str,
    message: str,
    *,
    status_code: int,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    """For plain Django views (outside DRF) that must answer with the same shape."""
    response = JsonResponse(error_body(code, message, details), status=status_code)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


_MESSAGES = {
    "not_authenticated": "Authentication credentials were not provided.",
    "authentication_failed": "The credentials given are not valid.",
    "permission_denied": "You do not have permission to do this.",
    "not_found": "Not found.",
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif (unavailable := as_service_unavailable(exc)) is not None:
        exc = APIError(
            unavailable.code,
            unavailable.message,
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(unavailable.retry_after)},
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, APIError):
        response.data = error_body(exc.error_code, exc.message, exc.details)
        for name, value in exc.extra_headers.items():
            response[name] = value
        return response
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body(
            "invalid_input", "The request has invalid fields.", {"fields": exc.detail}
        )
        return response
    if isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
        detail = exc.detail
        message = str(detail) if isinstance(detail, str) else _MESSAGES.get(code, "Error.")
        response.data = error_body(code, message)
    return response
