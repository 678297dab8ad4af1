"""OpenAPI (drf-spectacular) pieces every management-API view shares: the one
error body of apps.core.api, documented once, and `error_responses()` to list
the statuses a view can answer with."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorBody = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorDetail",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "details": serializers.DictField(
                    help_text='Field errors are under "fields": {"<field>": ["message"]}.'
                ),
                "request_id": serializers.CharField(allow_null=True),
            },
        )
    },
)

_DESCRIPTIONS = {
    400: "Invalid input (a field, the body, or a query parameter such as one holding NUL): "
    "field errors under error.details.fields; nothing was written.",
    401: "No credentials, or an unknown, revoked or expired personal token.",
    403: "Your role in this organization is too low for this.",
    404: "No such organization (or you are not a member), or no such object in it.",
    409: "The change conflicts with the current state (the message says why).",
    410: "Gone: the object can no longer be used (for example an expired file).",
    413: "The body (an uploaded document) is larger than this endpoint accepts.",
    502: "The provider could not be reached; nothing was written.",
}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """`responses={200: X, **error_responses(403, 404)}`; 400 and 401 are always added:
    any request can be refused for its credentials or a malformed query (NUL in a
    parameter is refused before any view, apps.core.middleware.QueryStringGateMiddleware)."""
    return {
        status: OpenApiResponse(ErrorBody, description=_DESCRIPTIONS[status])
        for status in sorted({400, 401, *statuses})
    }
