"""Management API for reviewers' automation: list, detail and export audit events.

Mounted under /api/v1/orgs/<org_slug>/ (OrgAPIMixin: reviewer or above reads;
a personal API token works as the person). Filters are the dashboard's, as
query parameters."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
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
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from typing_extensions import override

from apps.audit import exports
from apps.audit import fields as audit_fields
from apps.audit.filters import FILTER_FIELDS, AuditFilterForm
from apps.audit.models import AuditEvent, AuditExport, AuditSink, ExportFormat, ExportStatus
from apps.audit.proof import ProofFilterError, check_proof_filter
from apps.audit.services import (
    audit_export_direct,
    audit_export_request,
    audit_sink_create,
    audit_sink_lag,
    audit_sink_send_test,
    audit_verify_export,
    audit_verify_trail,
)
from apps.core.api import APIError
from apps.core.openapi import error_responses
from apps.core.parsers import JSONParser
from apps.organizations.models import OrgRole
from apps.organizations.tenancy import OrgAPIMixin
from apps.review.views import streaming_export


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    class Meta:
        model = AuditEvent
        fields = tuple(audit_fields.EXPORTED)
        read_only_fields = fields


_FILTER_PARAMS = [
    OpenApiParameter("start", OpenApiTypes.DATETIME, description="From (inclusive), UTC."),
    OpenApiParameter("end", OpenApiTypes.DATETIME, description="To (inclusive), UTC."),
    OpenApiParameter("member", OpenApiTypes.STR, description="Member email or user id."),
    OpenApiParameter(
        "on_behalf_of",
        OpenApiTypes.STR,
        description="Member email or user id: events of workers acting for this member.",
    ),
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
_PROOF_PARAM = OpenApiParameter(
    "proof",
    OpenApiTypes.BOOL,
    description=(
        "1: a contiguous slice of every chain between start and end, each row with its "
        "chain links and content digest, ending in a signed checkpoint (only start/end "
        "may filter it). Check it with scripts/verify_audit_export.py."
    ),
)


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

    def scope_queryset(self) -> QuerySet[AuditEvent]:
        return self.filter_form(self.request).filter(super().scope_queryset())


@extend_schema(tags=["audit"], summary="One audit event")
class AuditEventDetailAPIView(AuditAPIMixin, generics.RetrieveAPIView[AuditEvent]):
    serializer_class = AuditEventSerializer


class _AnyAccept(BaseContentNegotiation):
    """The export answers CSV/JSONL whatever Accept says; errors stay JSON."""

    @override
    def select_parser(self, request: Any, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    @override
    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None) -> Any:
        return renderers[0], renderers[0].media_type


@extend_schema(
    tags=["audit"],
    summary="Export audit events as CSV or JSON Lines (streamed)",
    parameters=[*_FILTER_PARAMS, _PROOF_PARAM],
    responses={
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV, one event a row."),
        (200, "application/x-ndjson"): OpenApiResponse(
            OpenApiTypes.STR, description="JSON Lines, one event a line."
        ),
    },
)
class AuditEventExportAPIView(AuditAPIMixin, APIView):
    content_negotiation_class = _AnyAccept

    def get(self, request: Request, org_slug: str, fmt: str) -> Any:  # noqa: ARG002 - a URL kwarg, passed by name
        if fmt not in ExportFormat.values:
            raise APIError("invalid_format", "Export format must be csv or jsonl.", status_code=404)
        proof = request.query_params.get("proof", "") in ("1", "true")
        query = request.query_params.copy()
        query.pop("proof", None)
        form = AuditFilterForm(data=query, organization=self.organization)
        if not form.is_valid():
            raise APIError(
                "invalid_filter",
                "The audit filter has invalid values.",
                details={"fields": form.errors.get_json_data()},
            )
        params = form.as_params()
        if proof:
            try:
                check_proof_filter(params)
            except ProofFilterError as exc:
                raise APIError("invalid_filter", str(exc)) from None
        events = form.filter(self.scope_queryset())
        stream = audit_export_direct(
            organization=self.organization,
            actor=request.user,
            events=events,
            params=params,
            fmt=fmt,
            surface="api",
            proof=proof,
            start=form.cleaned_data.get("start"),
            end=form.cleaned_data.get("end"),
        )
        suffix = "-proof" if proof else ""
        return streaming_export(stream, fmt, exports.filename(self.organization, fmt, suffix))


# --- Export jobs: create, poll, download ---------------------------------------------


class AuditExportSerializer(serializers.ModelSerializer[AuditExport]):
    percent = serializers.IntegerField(read_only=True)
    requested_by_email = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField(
        help_text="Set once the file is ready (status done), until it expires."
    )

    class Meta:
        model = AuditExport
        fields = (
            "id",
            "status",
            "format",
            "filter",
            "proof",
            "rows_done",
            "rows_total",
            "percent",
            "error",
            "requested_by_email",
            "created_at",
            "finished_at",
            "expires_at",
            "download_url",
        )
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
    proof = serializers.BooleanField(
        default=False,
        help_text="Chain links on every row and a signed checkpoint (filter by start/end only).",
    )


class _ExportScope(AuditAPIMixin):
    model = AuditExport  # type: ignore[assignment]
    # Reviewers export on the dashboard too: starting a job is not an admin act.
    write_role = OrgRole.REVIEWER

    def scope_queryset(self) -> QuerySet[AuditExport]:
        return self.tenant_rows(AuditExport).select_related("organization", "requested_by")


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
        params = form.as_params()
        proof = body.validated_data["proof"]
        if proof:
            try:
                check_proof_filter(params)
            except ProofFilterError as exc:
                raise serializers.ValidationError({"filter": [str(exc)]}) from None
        export = audit_export_request(
            organization=self.organization,
            actor=request.user,
            params=params,
            fmt=body.validated_data["format"],
            proof=proof,
        )
        export = self.scope_queryset().get(pk=export.pk)
        return Response(AuditExportSerializer(export).data, status=status.HTTP_201_CREATED)


class AuditExportJobDetailAPIView(_ExportScope, APIView):
    @extend_schema(
        tags=["audit"],
        summary="Progress of an export job",
        responses={200: AuditExportSerializer, **error_responses(403, 404)},
    )
    def get(self, _request: Request, **kwargs: Any) -> Response:
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

    def get(self, _request: Request, **kwargs: Any) -> Any:
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


@extend_schema(
    tags=["audit"],
    summary="Verify the trail, or an uploaded export with proof",
    description=(
        "With a multipart `file` (an export downloaded with proof): checks it against this "
        "organization's signing key, as scripts/verify_audit_export.py does offline. "
        "Without: recomputes every chain of the organization in the database. Either way "
        "the run is recorded as an `audit.verified` event."
    ),
    request={
        "multipart/form-data": {
            "type": "object",
            "properties": {"file": {"type": "string", "format": "binary"}},
        }
    },
    responses={200: OpenApiTypes.OBJECT},
)
class AuditVerifyAPIView(AuditAPIMixin, APIView):
    write_role = OrgRole.REVIEWER  # verifying changes nothing but the trail's own record
    parser_classes = (MultiPartParser, JSONParser)

    def post(self, request: Request, org_slug: str) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        upload = request.FILES.get("file")
        if upload is not None:
            report = audit_verify_export(
                organization=self.organization,
                actor=request.user,
                chunks=upload.chunks(),
                surface="api",
            )
            return Response({"kind": "export", **report.as_dict()})
        reports = audit_verify_trail(
            organization=self.organization,
            actor=request.user,
            surface="api",
        )
        return Response(
            {
                "kind": "trail",
                "ok": all(r.ok for r in reports),
                "events": sum(r.count for r in reports),
                "chains": [
                    {
                        "chain_key": r.chain_key,
                        "ok": r.ok,
                        "count": r.count,
                        "head_hash": r.head_hash,
                        "problem": r.problem,
                        "event_id": r.event_id,
                        "seq": r.seq,
                    }
                    for r in reports
                ],
            }
        )


class AuditSinkSerializer(serializers.ModelSerializer[AuditSink]):
    """A sink's settings and delivery state; the secret is write-only."""

    secret = serializers.CharField(write_only=True, required=False, allow_blank=True)
    start = serializers.ChoiceField(
        choices=["now", "beginning"], write_only=True, required=False, default="now"
    )
    lag = serializers.SerializerMethodField()

    class Meta:
        model = AuditSink
        fields = (
            "id",
            "name",
            "kind",
            "format",
            "url",
            "host",
            "port",
            "ca_pem",
            "secret",
            "start",
            "status",
            "lag",
            "delivered",
            "attempts",
            "next_attempt_at",
            "last_success_at",
            "last_error",
            "last_error_at",
            "created_at",
        )
        read_only_fields = (
            "id",
            "status",
            "lag",
            "delivered",
            "attempts",
            "next_attempt_at",
            "last_success_at",
            "last_error",
            "last_error_at",
            "created_at",
        )

    def get_lag(self, sink: AuditSink) -> int:
        return audit_sink_lag(sink)


class _SinkScope(OrgAPIMixin):
    read_role = OrgRole.ADMIN  # where the trail goes is an admin's decision
    model = AuditSink

    def scope_queryset(self) -> QuerySet[AuditSink]:
        return self.tenant_rows(AuditSink).select_related("organization")


@extend_schema_view(
    get=extend_schema(tags=["audit"], summary="SIEM sinks with their lag and last error"),
    post=extend_schema(tags=["audit"], summary="Add a SIEM sink (webhook or syslog over TLS)"),
)
class AuditSinkListCreateAPIView(_SinkScope, generics.ListCreateAPIView[AuditSink]):
    serializer_class = AuditSinkSerializer

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        try:
            sink = audit_sink_create(
                organization=self.organization,
                actor=request.user,
                **{k: v for k, v in data.items() if v is not None},
            )
        except DjangoValidationError as exc:
            raise APIError(
                "invalid_input",
                "The sink has invalid fields.",
                details={"fields": exc.message_dict},
            ) from None
        return Response(self.get_serializer(sink).data, status=201)


@extend_schema(
    tags=["audit"],
    summary="Send a test event to a sink now",
    request=None,
    responses={200: OpenApiTypes.OBJECT},
)
class AuditSinkTestAPIView(_SinkScope, APIView):
    def post(self, request: Request, org_slug: str, pk: int) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        sink = generics.get_object_or_404(self.scope_queryset(), pk=pk)
        error = audit_sink_send_test(sink=sink, actor=request.user)
        return Response({"delivered": not error, "error": error})
