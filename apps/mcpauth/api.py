"""Management API for MCP clients (/api/v1/orgs/<org_slug>/mcp/…): the organization's
OAuth client policy, and every grant (client → worker) with revoke.

The twin of Settings → MCP clients (apps.mcpauth.views): admins and owners only,
even to read, as on the dashboard. The policy is validated with the dashboard's own
form and both surfaces write through apps.mcpauth.services, which audits. No client
secret and no token is ever in a response."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import Max, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from oauth2_provider.models import get_application_model
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import APIError, body_object, from_form_errors
from apps.core.openapi import error_responses
from apps.mcpauth import services
from apps.mcpauth.forms import PolicyForm
from apps.mcpauth.models import MAX_TOKEN_MINUTES, McpGrant, McpPolicy
from apps.organizations.models import OrgRole
from apps.organizations.tenancy import OrgAPIMixin

API_REVOKE_REASON = "Revoked through the management API"

POLICY_EXAMPLE = {
    "clients_allowed": True,
    "allowed_clients": ["claude.ai", "https://cursor.com/oauth/client.json"],
    "token_minutes": 60,
    "updated_at": "2026-12-01T10:00:00Z",
}
GRANT_EXAMPLE = {
    "id": 12,
    "client_id": "https://claude.ai/oauth/mcp-oauth-client-metadata",
    "client_name": "Claude",
    "registration": "cimd",
    "worker": 7,
    "worker_name": "demo-agent",
    "role": 3,
    "role_name": "sandbox-read-and-create-tasks",
    "approved_by_email": "admin@example.com",
    "created_at": "2026-12-01T10:00:00Z",
    "last_used_at": "2026-12-01T10:05:00Z",
    "active": True,
    "revoked_at": None,
    "revoked_by_email": "",
    "revoke_reason": "",
}


class McpPolicySerializer(serializers.Serializer[McpPolicy]):
    """The policy as the API shows it; `allowed_clients` is one entry per item."""

    clients_allowed = serializers.BooleanField(
        help_text="Members with the Admin role may connect OAuth (MCP) clients."
    )
    allowed_clients = serializers.ListField(
        # One entry per item: an entry with a space or a line break would read as two
        # (surrounding whitespace is trimmed before the pattern is checked).
        child=serializers.RegexField(r"^\S+$", max_length=500),
        source="allowlist",
        help_text="Client-id hosts (claude.ai, .example.com for a domain and its "
        "subdomains) or full client-id URLs. Empty: any client. When set, only clients "
        "with a matching metadata-document URL may connect (dynamically registered "
        "clients are refused).",
    )
    # The bounds are checked by the dashboard's PolicyForm (the model's validators).
    token_minutes = serializers.IntegerField(
        help_text=f"Lifetime of each OAuth access token, in minutes (5 to {MAX_TOKEN_MINUTES})."
    )
    # Checked by the dashboard's PolicyForm: a role of this organization.
    member_role = serializers.IntegerField(
        source="member_role_id",
        allow_null=True,
        required=False,
        help_text="Role id: members may connect their own MCP clients, each as a worker "
        "acting for them with this role. Null: only admins connect clients.",
    )
    updated_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="Null while the defaults apply."
    )


class McpGrantSerializer(serializers.ModelSerializer[McpGrant]):
    """A grant, without anything secret: no client secret, no token."""

    registration = serializers.ChoiceField(
        source="application.registration_source",
        choices=get_application_model().RegistrationSource.choices,
        read_only=True,
        help_text="How the client registered: a Client ID Metadata Document (cimd), "
        "RFC 7591 dynamic registration (dcr), or by hand (manual).",
    )
    worker_name = serializers.CharField(source="worker.name", read_only=True)
    role_name = serializers.CharField(source="role.name", read_only=True)
    approved_by_email = serializers.SerializerMethodField()
    last_used_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="Last call with any token issued to this grant.",
    )
    active = serializers.BooleanField(source="is_active", read_only=True)
    revoked_by_email = serializers.SerializerMethodField()

    class Meta:
        model = McpGrant
        fields = (
            "id",
            "client_id",
            "client_name",
            "registration",
            "worker",
            "worker_name",
            "role",
            "role_name",
            "approved_by_email",
            "created_at",
            "last_used_at",
            "active",
            "revoked_at",
            "revoked_by_email",
            "revoke_reason",
        )
        read_only_fields = fields

    def get_approved_by_email(self, obj: McpGrant) -> str:
        return obj.approved_by.email if obj.approved_by else ""

    def get_revoked_by_email(self, obj: McpGrant) -> str:
        return obj.revoked_by.email if obj.revoked_by else ""


class McpGrantRevokeSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(
        max_length=200, required=False, allow_blank=True, help_text="Kept in the audit trail."
    )


class _McpAdminScope(OrgAPIMixin):
    """As on the dashboard's Settings → MCP clients: admins and owners, even to read."""

    read_role: ClassVar[str] = OrgRole.ADMIN
    model = McpGrant
    kwargs: dict[str, Any]

    def scope_queryset(self) -> QuerySet[McpGrant]:
        return (
            self.tenant_rows(McpGrant)
            .select_related("application", "worker", "role", "approved_by", "revoked_by")
            .annotate(last_used_at=Max("issued__worker_token__last_used_at"))
        )

    def get_grant(self) -> McpGrant:
        return get_object_or_404(self.scope_queryset(), pk=self.kwargs["grant_id"])


class McpPolicyAPIView(_McpAdminScope, APIView):
    @extend_schema(
        tags=["mcp clients"],
        summary="Read the organization's MCP client policy",
        responses={200: McpPolicySerializer, **error_responses(403, 404)},
        examples=[OpenApiExample("policy", value=POLICY_EXAMPLE, response_only=True)],
    )
    def get(self, _request: Request, **kwargs: Any) -> Response:
        return Response(McpPolicySerializer(services.policy_for(self.organization)).data)

    @extend_schema(
        tags=["mcp clients"],
        summary="Change the MCP client policy (fields left out keep their value)",
        description="Turning clients off or narrowing the allowlist refuses new consents "
        "and refreshes of clients that no longer match; revoke a grant to end it at once. "
        "A shorter token lifetime applies to tokens issued from now on.",
        request=McpPolicySerializer,
        responses={200: McpPolicySerializer, **error_responses(400, 403, 404)},
        examples=[
            OpenApiExample(
                "only Claude, 30-minute tokens",
                value={"allowed_clients": ["claude.ai"], "token_minutes": 30},
                request_only=True,
            )
        ],
    )
    def patch(self, request: Request, **kwargs: Any) -> Response:
        shape = McpPolicySerializer(data=body_object(request), partial=True)
        shape.is_valid(raise_exception=True)
        sent = dict(shape.validated_data)
        if "allowlist" in sent:
            sent["allowed_clients"] = "\n".join(sent.pop("allowlist"))
        if "member_role_id" in sent:
            sent["member_role"] = sent.pop("member_role_id")
        # Validate with the dashboard's form: what is not sent keeps its value.
        current = services.policy_for(self.organization)
        data = {field: getattr(current, field) for field in PolicyForm.Meta.fields}
        data["member_role"] = current.member_role_id
        form = PolicyForm(data={**data, **sent}, instance=services.policy_for(self.organization))
        if not form.is_valid():
            raise from_form_errors(form)
        policy = services.policy_update(
            organization=self.organization,
            actor=request.user,
            **{field: form.cleaned_data[field] for field in PolicyForm.Meta.fields},
        )
        return Response(McpPolicySerializer(policy).data)


@extend_schema_view(
    get=extend_schema(
        tags=["mcp clients"],
        summary="List MCP client grants (active and revoked, newest first)",
        responses={200: McpGrantSerializer(many=True), **error_responses(403, 404)},
        examples=[OpenApiExample("grant", value=GRANT_EXAMPLE, response_only=True)],
    )
)
class McpGrantListAPIView(_McpAdminScope, generics.ListAPIView[McpGrant]):
    serializer_class = McpGrantSerializer


class McpGrantDetailAPIView(_McpAdminScope, APIView):
    @extend_schema(
        tags=["mcp clients"],
        summary="One MCP client grant",
        responses={200: McpGrantSerializer, **error_responses(403, 404)},
    )
    def get(self, _request: Request, **kwargs: Any) -> Response:
        return Response(McpGrantSerializer(self.get_grant()).data)

    @extend_schema(
        tags=["mcp clients"],
        summary="Revoke a grant (the same as POST …/revoke/ without a reason)",
        description="The grant stays listed as revoked. 409 when it is revoked already.",
        responses={200: McpGrantSerializer, **error_responses(403, 404, 409)},
    )
    def delete(self, request: Request, **kwargs: Any) -> Response:
        return _revoke(self, request, reason=API_REVOKE_REASON)


class McpGrantRevokeAPIView(_McpAdminScope, APIView):
    @extend_schema(
        tags=["mcp clients"],
        summary="Revoke a grant (immediate)",
        description="Every token issued to the grant stops working on its next call and "
        "its refresh tokens are refused; to connect again, a person consents again. "
        "409 when the grant is revoked already.",
        request=McpGrantRevokeSerializer,
        responses={200: McpGrantSerializer, **error_responses(400, 403, 404, 409)},
        examples=[
            OpenApiExample("revoke", value={"reason": "Laptop lost"}, request_only=True),
        ],
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        form = McpGrantRevokeSerializer(data=body_object(request))
        form.is_valid(raise_exception=True)
        return _revoke(self, request, reason=form.validated_data.get("reason") or API_REVOKE_REASON)


def _revoke(view: _McpAdminScope, request: Request, *, reason: str) -> Response:
    grant = view.get_grant()
    if not grant.is_active():
        raise APIError(
            "conflict", "This grant is revoked already.", status_code=status.HTTP_409_CONFLICT
        )
    services.grant_revoke(grant=grant, actor=request.user, reason=reason)
    return Response(McpGrantSerializer(view.get_grant()).data)
