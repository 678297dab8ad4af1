"""Management API for reviewers' automation: list, detail and export audit events.

Mounted under /api/v1/orgs/<org_slug>/ (OrgAPIMixin: reviewer or above reads;
a personal API token works as the person). Filters are the dashboard's, as
query parameters."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.audit import exports
from apps.audit.filters import AuditFilterForm
from apps.audit.models import AuditEvent, ExportFormat
from apps.audit.services import audit_export_direct
from apps.audit.views import streaming_export
from apps.core.api import APIError
from apps.organizations.tenancy import OrgAPIMixin


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    class Meta:
        model = AuditEvent
        fields = list(exports.COLUMNS)
        read_only_fields = fields


_FILTER_PARAMS = [
    OpenApiParameter("start", OpenApiTypes.DATETIME, description="From (inclusive), UTC."),
    OpenApiParameter("end", OpenApiTypes.DATETIME, description="To (inclusive), UTC."),
    OpenApiParameter("member", OpenApiTypes.STR, description="Member email or user id."),
    OpenApiParameter("worker", OpenApiTypes.STR, description="Worker name or id."),
    OpenApiParameter("token", OpenApiTypes.STR, description="Worker token public id."),
    OpenApiParameter(
        "action", OpenApiTypes.STR, description='Exact action, or a prefix ending in "." or "*".'
    ),
    OpenApiParameter(
        "call",
        OpenApiTypes.STR,
        description='What the agent tried: a SaaS action, or "GET github (proxy)".',
    ),
    OpenApiParameter("decision", OpenApiTypes.STR, enum=["allowed", "denied"]),
    OpenApiParameter("connection", OpenApiTypes.STR, description="Connection name or id."),
    OpenApiParameter("provider", OpenApiTypes.STR, description="Provider key."),
    OpenApiParameter("outcome", OpenApiTypes.STR, enum=["success", "failure", "denied", "error"]),
    OpenApiParameter(
        "status", OpenApiTypes.STR, description='Upstream HTTP status ("404") or class ("5xx").'
    ),
    OpenApiParameter("q", OpenApiTypes.STR, description="Text in target label or reason."),
]


class AuditAPIMixin(OrgAPIMixin):
    model = AuditEvent

    def filter_form(self, request: Request) -> AuditFilterForm:
        form = AuditFilterForm(data=request.query_params, organization=self.organization)
        if not form.is_valid():
            raise APIError(
                "invalid_filter",
                "The audit filter has invalid values.",
                details={"fields": form.errors.get_json_data()},
            )
        return form


@extend_schema(
    tags=["audit"],
    summary="List audit events (newest first, cursor paginated)",
    parameters=_FILTER_PARAMS,
)
class AuditEventListAPIView(AuditAPIMixin, generics.ListAPIView[AuditEvent]):
    serializer_class = AuditEventSerializer

    def get_queryset(self) -> QuerySet[AuditEvent]:
        return self.filter_form(self.request).filter(self.scope_queryset())


@extend_schema(tags=["audit"], summary="One audit event")
class AuditEventDetailAPIView(AuditAPIMixin, generics.RetrieveAPIView[AuditEvent]):
    serializer_class = AuditEventSerializer


class _AnyAccept(BaseContentNegotiation):
    """The export answers CSV/JSONL whatever Accept says; errors stay JSON."""

    def select_parser(self, request: Any, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None) -> Any:
        return renderers[0], renderers[0].media_type


@extend_schema(
    tags=["audit"],
    summary="Export audit events as CSV or JSON Lines (streamed)",
    parameters=_FILTER_PARAMS,
    responses={
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV, one event a row."),
        (200, "application/x-ndjson"): OpenApiResponse(
            OpenApiTypes.STR, description="JSON Lines, one event a line."
        ),
    },
)
class AuditEventExportAPIView(AuditAPIMixin, APIView):
    content_negotiation_class = _AnyAccept

    def get(self, request: Request, org_slug: str, fmt: str) -> Any:
        if fmt not in ExportFormat.values:
            raise APIError("invalid_format", "Export format must be csv or jsonl.", status_code=404)
        form = self.filter_form(request)
        events = form.filter(self.scope_queryset())
        stream = audit_export_direct(
            organization=self.organization,
            user=request.user,
            events=events,
            params=form.as_params(),
            fmt=fmt,
            request=request._request,
            surface="api",
        )
        return streaming_export(stream, fmt, exports.filename(self.organization, fmt))
