"""Management API for reviewers' automation: list, detail and export audit events.

Mounted under /api/v1/orgs/<org_slug>/ (OrgAPIMixin: reviewer or above reads;
a personal API token works as the person). Filters are the dashboard's, as
query parameters."""

from __future__ import annotations

from typing import Any

from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import generics, serializers, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit import exports
from apps.audit.filters import FILTER_FIELDS, AuditFilterForm
from apps.audit.models import AuditEvent, AuditExport, ExportFormat, ExportStatus
from apps.audit.services import audit_export_direct, audit_export_request
from apps.audit.views import streaming_export
from apps.core.api import APIError
from apps.core.openapi import error_responses
from apps.organizations.models import OrgRole
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


# --- Export jobs: create, poll, download ---------------------------------------------


class AuditExportSerializer(serializers.ModelSerializer[AuditExport]):
    percent = serializers.IntegerField(read_only=True)
    requested_by_email = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField(
        help_text="Set once the file is ready (status done), until it expires."
    )

    class Meta:
        model = AuditExport
        fields = [
            "id",
            "status",
            "format",
            "filter",
            "rows_done",
            "rows_total",
            "percent",
            "error",
            "requested_by_email",
            "created_at",
            "finished_at",
            "expires_at",
            "download_url",
        ]
        read_only_fields = fields

    def get_requested_by_email(self, obj: AuditExport) -> str:
        return obj.requested_by.email if obj.requested_by else ""

    def get_download_url(self, obj: AuditExport) -> str | None:
        if not _ready(obj):
            return None
        return reverse(
            "org_api:audit-export-download",
            kwargs={"org_slug": obj.organization.slug, "export_id": obj.pk},
        )


def _ready(export: AuditExport) -> bool:
    return export.is_downloadable() and not (
        export.expires_at and export.expires_at <= timezone.now()
    )


class AuditExportCreateSerializer(serializers.Serializer[Any]):
    format = serializers.ChoiceField(choices=ExportFormat.choices)
    filter = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        required=False,
        help_text="The list's filters, by name: " + ", ".join(FILTER_FIELDS) + ".",
    )


class _ExportScope(AuditAPIMixin):
    model = AuditExport  # type: ignore[assignment]
    # Reviewers export on the dashboard too: starting a job is not an admin act.
    write_role = OrgRole.REVIEWER

    def scope_queryset(self) -> QuerySet[AuditExport]:
        return AuditExport.objects.for_organization(self.organization).select_related(
            "organization", "requested_by"
        )


@extend_schema_view(
    get=extend_schema(
        tags=["audit"],
        summary="List audit export jobs (newest first)",
        responses={200: AuditExportSerializer(many=True), **error_responses(403, 404)},
    )
)
class AuditExportJobListCreateAPIView(_ExportScope, generics.ListAPIView[AuditExport]):
    serializer_class = AuditExportSerializer

    @extend_schema(
        tags=["audit"],
        summary="Start an export job (a file of the filtered events, written in the background)",
        description="Poll the job until status is done, then GET its download_url. The file "
        "is kept for a limited time (expires_at). Creating the job is itself audited.",
        request=AuditExportCreateSerializer,
        responses={201: AuditExportSerializer, **error_responses(400, 403, 404)},
        examples=[
            OpenApiExample(
                "denied calls in November",
                value={
                    "format": "jsonl",
                    "filter": {
                        "decision": "denied",
                        "start": "2026-11-01T00:00",
                        "end": "2026-11-30T23:59",
                    },
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        body = AuditExportCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        given = body.validated_data.get("filter") or {}
        unknown = sorted(set(given) - set(FILTER_FIELDS))
        if unknown:
            raise serializers.ValidationError(
                {"filter": [f"Unknown filter: {', '.join(unknown)}."]}
            )
        form = AuditFilterForm(data=given, organization=self.organization)
        if not form.is_valid():
            raise serializers.ValidationError(
                {f"filter.{name}": [str(m) for m in errs] for name, errs in form.errors.items()}
            )
        export = audit_export_request(
            organization=self.organization,
            user=request.user,
            params=form.as_params(),
            fmt=body.validated_data["format"],
            request=request._request,
        )
        export = self.scope_queryset().get(pk=export.pk)
        return Response(AuditExportSerializer(export).data, status=status.HTTP_201_CREATED)


class AuditExportJobDetailAPIView(_ExportScope, APIView):
    @extend_schema(
        tags=["audit"],
        summary="Progress of an export job",
        responses={200: AuditExportSerializer, **error_responses(403, 404)},
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        export = get_object_or_404(self.scope_queryset(), pk=kwargs["export_id"])
        return Response(AuditExportSerializer(export).data)


@extend_schema(
    tags=["audit"],
    summary="Download a finished export file",
    responses={
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV, one event a row."),
        (200, "application/x-ndjson"): OpenApiResponse(
            OpenApiTypes.STR, description="JSON Lines, one event a line."
        ),
        **error_responses(403, 404, 409, 410),
    },
)
class AuditExportJobDownloadAPIView(_ExportScope, APIView):
    content_negotiation_class = _AnyAccept

    def get(self, request: Request, **kwargs: Any) -> Any:
        export = get_object_or_404(self.scope_queryset(), pk=kwargs["export_id"])
        if export.status in (ExportStatus.PENDING, ExportStatus.RUNNING):
            raise APIError(
                "not_ready",
                f"The export is still {export.status} ({export.percent}%). Poll it and try again.",
                status_code=status.HTTP_409_CONFLICT,
            )
        if not _ready(export):
            raise APIError(
                "gone",
                "This export failed or its file has expired. Start a new one.",
                status_code=status.HTTP_410_GONE,
            )
        stamp = export.created_at.strftime("%Y%m%d-%H%M%S")
        response = FileResponse(
            default_storage.open(export.file_path, "rb"),
            as_attachment=True,
            filename=exports.filename(self.organization, export.format, f"-{stamp}"),
            content_type=exports.CONTENT_TYPES[export.format],
        )
        response["Cache-Control"] = "no-store"
        response["X-Content-Type-Options"] = "nosniff"
        return response
