"""Management API of the inventory (/api/v1/orgs/<org_slug>/inventory/…): what the
`grantry` CLI uploads and each step of a key's way out.

Reviewers read; admins write (upload, import, rewrite reports, new key, confirm rotated,
the proposed role). A secret is accepted by `import/` and `new-key/` (write-only, and
checked with the provider before anything is saved) and never returned."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.connections import services as connections
from apps.connections.forms import ConnectionNameForm
from apps.core.api import APIError, from_form_errors, from_service_error
from apps.core.openapi import error_responses
from apps.inventory import selectors, services
from apps.inventory.models import Finding, FindingLocation, FindingState
from apps.organizations.tenancy import OrgAPIMixin
from apps.providers.registry import BaseURLParamError

MAX_FINDINGS = 2000
MAX_FILES = 10000


class LocationSerializer(serializers.ModelSerializer[FindingLocation]):
    present = serializers.BooleanField(source="is_present", read_only=True)

    class Meta:
        model = FindingLocation
        fields = (
            "host", "file", "location", "line", "client", "name", "server", "program",
            "first_seen_at", "last_seen_at", "gone_at", "replaced_at", "present",
        )  # fmt: skip
        read_only_fields = fields


class FindingSerializer(serializers.ModelSerializer[Finding]):
    id = serializers.CharField(source="public_id", read_only=True)
    provider = serializers.CharField(source="provider_key", read_only=True)
    connection_name = serializers.SerializerMethodField()
    role_name = serializers.SerializerMethodField()
    locations = LocationSerializer(many=True, read_only=True)

    class Meta:
        model = Finding
        fields = (
            "id", "fingerprint", "provider", "kind", "label", "scopes", "scope_status",
            "scope_note", "state", "first_seen_at", "last_seen_at", "connection_name",
            "role_name", "imported_at", "config_replaced_at", "rotated_at", "confirmed_at",
            "locations",
        )  # fmt: skip
        read_only_fields = fields

    def get_connection_name(self, obj: Finding) -> str:
        return obj.connection.name if obj.connection else ""

    def get_role_name(self, obj: Finding) -> str:
        return obj.role.name if obj.role else ""


# --- upload -----------------------------------------------------------------------------


class CheckSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=["live", "refused", "unknown", "unreachable"])
    scopes = serializers.ListField(
        child=serializers.CharField(max_length=200), max_length=200, allow_null=True
    )
    note = serializers.CharField(max_length=300, allow_blank=True, required=False)


class UploadedFindingSerializer(serializers.Serializer[Any]):
    """One place a key sits, as `grantry scan --json` prints it (never the key)."""

    fingerprint = serializers.RegexField(r"^fp_[0-9a-f]{24}$")
    provider = serializers.CharField(max_length=60, allow_blank=True)
    kind = serializers.RegexField(r"^[a-z0-9_]{1,60}$")
    # The CLI's key name; DRF's metaclass takes declared fields off the class, so this
    # does not shadow Field.label at run time.
    label = serializers.CharField(max_length=100)  # type: ignore[assignment]
    file = serializers.CharField(max_length=1000)
    location = serializers.CharField(max_length=500)
    # The column is a PostgreSQL integer: a larger line number is a clear 400, not a 500.
    line = serializers.IntegerField(
        min_value=1, max_value=2**31 - 1, allow_null=True, required=False
    )
    client = serializers.CharField(max_length=40, allow_blank=True, required=False)
    name = serializers.CharField(max_length=200, allow_blank=True, required=False)
    server = serializers.CharField(max_length=200, allow_blank=True, required=False)
    program = serializers.CharField(max_length=300, allow_blank=True, required=False)
    check = CheckSerializer(required=False)


class ScanUploadSerializer(serializers.Serializer[Any]):
    host = serializers.CharField(max_length=255)
    files_scanned = serializers.ListField(
        child=serializers.CharField(max_length=1000), max_length=MAX_FILES
    )
    findings = UploadedFindingSerializer(many=True, max_length=MAX_FINDINGS)  # type: ignore[call-arg]
    problems = serializers.ListField(
        child=serializers.DictField(), required=False, max_length=MAX_FILES
    )


class UploadResultSerializer(serializers.Serializer[Any]):
    findings_new = serializers.IntegerField()
    findings_seen = serializers.IntegerField()
    locations_gone = serializers.IntegerField()
    findings = serializers.ListField(child=serializers.DictField())


class _Scope(OrgAPIMixin):
    model = Finding

    def scope_queryset(self) -> QuerySet[Any]:
        return (
            self.tenant_rows(Finding)
            .select_related("connection", "role")
            .prefetch_related(
                Prefetch("locations", self.tenant_rows(FindingLocation).order_by("id"))
            )
        )

    def finding(self, finding_id: str) -> Finding:
        return get_object_or_404(self.scope_queryset(), public_id=finding_id)


class ScanUploadAPIView(_Scope, APIView):
    @extend_schema(
        tags=["inventory"],
        summary="Upload a scan (grantry scan --upload): where raw keys sit, never a key",
        request=ScanUploadSerializer,
        responses={201: UploadResultSerializer, **error_responses(400, 403, 404, 413)},
    )
    def post(self, request: Request, org_slug: str) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        body = ScanUploadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        result = services.scan_upload(
            organization=self.organization,
            host=data["host"],
            files_scanned=data["files_scanned"],
            findings=data["findings"],
            actor=request.user,
        )
        return Response(
            {
                "findings_new": result.findings_new,
                "findings_seen": result.findings_seen,
                "locations_gone": result.locations_gone,
                "findings": [
                    {"id": f.public_id, "fingerprint": f.fingerprint, "state": f.state}
                    for f in result.findings
                ],
            },
            status=status.HTTP_201_CREATED,
        )


_FILTERS = [
    OpenApiParameter(name, description=text)
    for name, text in (
        ("host", "Only keys found on this host."),
        ("provider", "Only keys of this provider (catalog key, e.g. github)."),
        ("state", f"One of {', '.join(FindingState.values)}."),
        ("file", "Only keys in files whose path contains this."),
        ("scope", "Only keys whose checked scopes include this one."),
        ("fingerprint", "The key with this fingerprint (fp_…)."),
    )
]


@extend_schema_view(
    get=extend_schema(
        tags=["inventory"],
        summary="List raw keys found (by host, file, provider, scope, state)",
        parameters=_FILTERS,
        responses={200: FindingSerializer(many=True), **error_responses(400, 403, 404)},
    )
)
class FindingListAPIView(_Scope, generics.ListAPIView[Finding]):
    serializer_class = FindingSerializer

    def scope_queryset(self) -> QuerySet[Any]:
        queryset = super().scope_queryset()
        params = self.request.query_params
        if params.get("state"):
            if params["state"] not in FindingState.values:
                raise APIError(
                    "invalid_input", f"'state' is one of {', '.join(FindingState.values)}."
                )
            queryset = queryset.filter(state=params["state"])
        if params.get("provider"):
            queryset = queryset.filter(provider_key=params["provider"])
        if params.get("fingerprint"):
            queryset = queryset.filter(fingerprint=params["fingerprint"])
        if params.get("scope"):
            queryset = queryset.filter(scopes__contains=[params["scope"]])
        if params.get("host"):
            queryset = queryset.filter(locations__host=params["host"])
        if params.get("file"):
            queryset = queryset.filter(locations__file__contains=params["file"])
        return queryset.distinct()


class FindingDetailAPIView(_Scope, APIView):
    @extend_schema(
        tags=["inventory"],
        summary="One raw key: where it sits and how far it is on its way out",
        responses={200: FindingSerializer, **error_responses(403, 404)},
    )
    def get(self, _request: Request, org_slug: str, finding_id: str) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        return Response(FindingSerializer(self.finding(finding_id)).data)


# --- the steps --------------------------------------------------------------------------


class ImportSerializer(serializers.Serializer[Any]):
    secret = serializers.CharField(
        max_length=4000,
        write_only=True,
        help_text="The key itself (the CLI reads it from the agent's config). It must have "
        "this finding's fingerprint and is checked with the provider before anything is "
        "saved; stored encrypted in the new connection, never returned.",
    )
    connection_name = serializers.CharField(max_length=60)
    base_url_params = serializers.DictField(child=serializers.CharField(), required=False)


class ImportAPIView(_Scope, APIView):
    @extend_schema(
        tags=["inventory"],
        summary="Move the key into a new API-key connection (checked at the provider first)",
        request=ImportSerializer,
        responses={201: FindingSerializer, **error_responses(400, 403, 404, 409, 502)},
    )
    def post(self, request: Request, org_slug: str, finding_id: str) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        finding = self.finding(finding_id)
        body = ImportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        form = ConnectionNameForm(
            data={"name": body.validated_data["connection_name"]}, organization=self.organization
        )
        if not form.is_valid():
            errors = from_form_errors(form)
            raise serializers.ValidationError(
                {"connection_name": errors.detail.get("name", errors.detail)}  # type: ignore[union-attr]
            )
        try:
            finding = services.finding_import(
                finding=finding,
                secret=body.validated_data["secret"],
                connection_name=form.cleaned_data["name"],
                base_url_params=body.validated_data.get("base_url_params"),
                actor=request.user,
            )
        except services.ImportRefused as exc:
            if exc.conflict:
                raise APIError("conflict", str(exc), status_code=status.HTTP_409_CONFLICT) from None
            raise serializers.ValidationError({exc.field: [str(exc)]}) from None
        except connections.CredentialRejected as exc:
            raise serializers.ValidationError(
                {"secret": [f"{exc} The key is dead already: nothing was saved."]}
            ) from None
        except connections.ProviderUnreachable as exc:
            raise _unreachable(exc) from None
        except BaseURLParamError as exc:
            raise serializers.ValidationError({"base_url_params": [str(exc)]}) from None
        return Response(FindingSerializer(self.finding(finding.public_id)).data, status=201)


def _unreachable(exc: Exception) -> APIError:
    return APIError(
        "provider_unreachable",
        f"{exc} Nothing was saved; try again in a moment.",
        status_code=status.HTTP_502_BAD_GATEWAY,
    )


class ConfigReplacedSerializer(serializers.Serializer[Any]):
    host = serializers.CharField(max_length=255)
    file = serializers.CharField(max_length=1000)


class ConfigReplacedAPIView(_Scope, APIView):
    @extend_schema(
        tags=["inventory"],
        summary="Report that grantry rewrite took the key out of a config file",
        request=ConfigReplacedSerializer,
        responses={200: FindingSerializer, **error_responses(400, 403, 404)},
    )
    def post(self, request: Request, org_slug: str, finding_id: str) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        finding = self.finding(finding_id)
        body = ConfigReplacedSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            services.finding_config_replaced(
                finding=finding, actor=request.user, **body.validated_data
            )
        except ValidationError as exc:
            raise from_service_error(exc) from None
        return Response(FindingSerializer(self.finding(finding_id)).data)


class NewKeySerializer(serializers.Serializer[Any]):
    api_key = serializers.CharField(
        max_length=4000,
        write_only=True,
        help_text="The key made at the provider to replace the raw one; checked with the "
        "provider before it is saved. The old key is then held, encrypted, only until "
        "confirm-rotated proves it dead.",
    )


class NewKeyAPIView(_Scope, APIView):
    @extend_schema(
        tags=["inventory"],
        summary="Give the key's connection its new key (the old one is held until confirmed dead)",
        request=NewKeySerializer,
        responses={200: FindingSerializer, **error_responses(400, 403, 404, 409, 502)},
    )
    def post(self, request: Request, org_slug: str, finding_id: str) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        finding = self.finding(finding_id)
        body = NewKeySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            services.finding_new_key(
                finding=finding, api_key=body.validated_data["api_key"], actor=request.user
            )
        except ValidationError as exc:
            raise from_service_error(exc) from None
        except connections.CredentialRejected as exc:
            raise serializers.ValidationError(
                {"api_key": [f"{exc} Nothing was changed."]}
            ) from None
        except connections.ProviderUnreachable as exc:
            raise _unreachable(exc) from None
        return Response(FindingSerializer(self.finding(finding_id)).data)


class ConfirmRotatedAPIView(_Scope, APIView):
    @extend_schema(
        tags=["inventory"],
        summary="Confirm rotated: the provider must now refuse the old key (401/403)",
        description="Grantry calls the provider's identity endpoint with the old key it "
        "holds. Refused: the held copy is purged and the key is rotated (or confirmed "
        "unused when no place holds it any more). Still accepted: 409 `still_live`.",
        request=None,
        responses={200: FindingSerializer, **error_responses(403, 404, 409, 502)},
    )
    def post(self, request: Request, org_slug: str, finding_id: str) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        finding = self.finding(finding_id)
        try:
            services.finding_confirm_rotated(finding=finding, actor=request.user)
        except services.StillLive as exc:
            raise APIError("still_live", str(exc), status_code=status.HTTP_409_CONFLICT) from None
        except ValidationError as exc:
            raise from_service_error(exc) from None
        except connections.ProviderUnreachable as exc:
            raise _unreachable(exc) from None
        return Response(FindingSerializer(self.finding(finding_id)).data)


class RoleProposalSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(max_length=500, allow_blank=True, required=False)
    rules = serializers.ListField(child=serializers.DictField(), max_length=500)


class RoleCreatedSerializer(serializers.Serializer[Any]):
    role = serializers.IntegerField()
    name = serializers.CharField()


class RoleProposalAPIView(_Scope, APIView):
    @extend_schema(
        tags=["inventory"],
        summary="Propose a role from what the key's program needs (a draft, nothing saved)",
        responses={200: RoleProposalSerializer, **error_responses(403, 404)},
    )
    def get(self, _request: Request, org_slug: str, finding_id: str) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        return Response(selectors.role_proposal(self.finding(finding_id)))

    @extend_schema(
        tags=["inventory"],
        summary="Save the (edited) proposed role",
        request=RoleProposalSerializer,
        responses={201: RoleCreatedSerializer, **error_responses(400, 403, 404)},
    )
    def post(self, request: Request, org_slug: str, finding_id: str) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        finding = self.finding(finding_id)
        body = RoleProposalSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            role = services.finding_role_create(
                finding=finding,
                name=body.validated_data["name"],
                description=body.validated_data.get("description", ""),
                rules=body.validated_data["rules"],
                actor=request.user,
            )
        except ValidationError as exc:
            raise from_service_error(exc) from None
        return Response({"role": role.pk, "name": role.name}, status=status.HTTP_201_CREATED)


class HostSerializer(serializers.Serializer[Any]):
    host = serializers.CharField()
    keys = serializers.IntegerField()
    live = serializers.IntegerField()
    oldest_live = serializers.DateTimeField(allow_null=True)
    last_seen = serializers.DateTimeField(allow_null=True)


class SummarySerializer(serializers.Serializer[Any]):
    keys = serializers.IntegerField(help_text="Raw keys found (distinct fingerprints).")
    live = serializers.IntegerField(help_text="Not rotated yet: the provider may accept them.")
    done = serializers.IntegerField()
    oldest_live = serializers.DateTimeField(allow_null=True)
    by_state = serializers.DictField(child=serializers.IntegerField())
    by_provider = serializers.DictField(child=serializers.IntegerField())
    hosts = HostSerializer(many=True)


class SummaryAPIView(_Scope, APIView):
    @extend_schema(
        tags=["inventory"],
        summary="The migration: raw keys found, still live, the oldest live one, per host",
        responses={200: SummarySerializer, **error_responses(403, 404)},
    )
    def get(self, _request: Request, org_slug: str) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        return Response(SummarySerializer(selectors.migration_summary(self.organization)).data)
