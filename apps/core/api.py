"""The one JSON error shape and the pagination every Grantry API uses.

Every error, from DRF validation to a broker denial, answers:

    {"error": {"code": "...", "message": "...", "details": {...}, "request_id": "..."}}
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.core.audit_context import request_id_for_logs
from apps.core.exceptions import as_service_unavailable


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
            "request_id": request_id_for_logs(),
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
    elif isinstance(exc, RequestDataTooBig):
        # Raised when a view first reads request.data: without this, Django's plain 400
        # page (or a 500 where the exception propagates) instead of the standard body.
        exc = APIError(
            "body_too_large",
            "The request body is larger than this server reads "
            f"({settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes); send less at once.",
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
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


# A service's coded, non-field ValidationError and the status it answers with.
SERVICE_ERROR_STATUS = {
    "forbidden": status.HTTP_403_FORBIDDEN,
    "last_owner": status.HTTP_409_CONFLICT,
    "conflict": status.HTTP_409_CONFLICT,
}


def from_service_error(exc: Any) -> exceptions.APIException:
    """A Django ValidationError raised by a service, as the standard error: field
    errors become 400 invalid_input with details.fields; a non-field error with a
    code from SERVICE_ERROR_STATUS gets that status; any other is a 400 under
    "non_field_errors". Use as `raise from_service_error(exc) from None`."""
    if hasattr(exc, "error_dict"):
        return exceptions.ValidationError(exc.message_dict)
    code = getattr(exc, "code", None) or ""
    if code in SERVICE_ERROR_STATUS:
        return APIError(
            "permission_denied" if code == "forbidden" else code,
            " ".join(exc.messages),
            status_code=SERVICE_ERROR_STATUS[code],
        )
    return exceptions.ValidationError({"non_field_errors": exc.messages})


def from_form_errors(form: Any) -> exceptions.ValidationError:
    """A bound, invalid Django form's errors as the standard 400 body. API views
    that validate with the dashboard's own form use this, so both surfaces refuse
    the same input with the same messages."""
    fields = {
        ("non_field_errors" if name == "__all__" else name): [str(m) for m in messages]
        for name, messages in form.errors.items()
    }
    return exceptions.ValidationError(fields)


def body_object(request: Any) -> dict[str, Any]:
    """The JSON body as a dict, or the standard 400 when it is not a JSON object
    (for views that hand the body to a Django form)."""
    data = request.data
    if not isinstance(data, dict):
        raise exceptions.ValidationError({"non_field_errors": ["The body must be a JSON object."]})
    return dict(data)
