"""Management API of MCP connections (/api/v1/orgs/<org>/connections/mcp/… and
…/connections/<id>/mcp/…), mirroring the dashboard's pages: add a server (the
dashboard's own form, the same services), start an OAuth connect to one, list its
tools with their state, approve the definition you read, list them again.

Reviewers read; admins write. No secret is ever serialized: the token, key and
environment are write-only, and the tools' definitions are the server's, not ours."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import PersonalAPIToken
from apps.connections import custody
from apps.connections.api import ConnectionSerializer
from apps.connections.gateway.forms import McpServerForm
from apps.connections.gateway.oauth import mcp_oauth_start
from apps.connections.gateway.services import mcp_connection_create
from apps.connections.gateway.tools import (
    GatewayProblem,
    ToolApprovalRefused,
    mcp_tool_approve,
    mcp_tools_refresh,
)
from apps.connections.mcp_models import MCP_PROVIDER_KEY, McpAuth, McpTool
from apps.connections.models import OAUTH_STATE_TTL, Connection
from apps.core.api import APIError, from_form_errors
from apps.core.openapi import error_responses
from apps.organizations.tenancy import OrgAPIMixin


class McpServerCreateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=60, help_text="e.g. linear; no '__'.")
    transport = serializers.ChoiceField(choices=["http", "stdio"])
    url = serializers.CharField(required=False, allow_blank=True, max_length=500)
    auth = serializers.ChoiceField(
        choices=["none", "api_key"],
        required=False,
        default="none",
        help_text="For a URL: none, or a static token (`api_key`). OAuth: "
        "connections/mcp/oauth/start/.",
    )
    secret = serializers.CharField(
        required=False, allow_blank=True, max_length=4000, write_only=True
    )
    header_name = serializers.CharField(required=False, max_length=100, default="Authorization")
    header_prefix = serializers.CharField(
        required=False, allow_blank=True, max_length=40, default="Bearer ", trim_whitespace=False
    )
    package = serializers.CharField(
        required=False, allow_blank=True, max_length=600, help_text="npx -y @scope/pkg@1.2.3 …"
    )
    env = serializers.DictField(
        child=serializers.CharField(max_length=4000),
        required=False,
        write_only=True,
        help_text="Environment variables of a stdio server that carry its credentials.",
    )
    network = serializers.BooleanField(required=False, default=False)


class McpOAuthStartSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=60)
    url = serializers.CharField(max_length=500)


class McpOAuthStartResponseSerializer(serializers.Serializer[Any]):
    authorization_url = serializers.URLField()
    expires_in = serializers.IntegerField()
    name = serializers.CharField()


class McpToolSerializer(serializers.ModelSerializer[McpTool]):
    class Meta:
        model = McpTool
        fields = (
            "id",
            "name",
            "state",
            "digest",
            "approved_digest",
            "definition",
            "approved_definition",
            "approved_at",
            "last_seen_at",
            "changed_at",
        )
        read_only_fields = fields


class McpApproveSerializer(serializers.Serializer[Any]):
    digest = serializers.CharField(
        max_length=64, help_text="The digest of the definition you reviewed (from the list)."
    )


class McpRefreshSerializer(serializers.Serializer[Any]):
    total = serializers.IntegerField()
    new = serializers.ListField(child=serializers.CharField())
    changed = serializers.ListField(child=serializers.CharField())
    removed = serializers.ListField(child=serializers.CharField())
    skipped = serializers.ListField(child=serializers.CharField())


def _form(view: OrgAPIMixin, data: dict[str, Any]) -> McpServerForm:
    """The dashboard's form, bound to the API body (same checks, same messages)."""
    env = data.get("env") or {}
    bound = {k: v for k, v in data.items() if k != "env" and v is not None}
    bound["env"] = "\n".join(f"{k}={v}" for k, v in env.items())
    if bound.get("network") is False:
        bound.pop("network")
    form = McpServerForm(data=bound, organization=view.organization)
    if not form.is_valid():
        raise from_form_errors(form)
    return form


def _problem(problem: GatewayProblem) -> APIError:
    code = problem.status if problem.status < 500 else status.HTTP_502_BAD_GATEWAY
    return APIError(problem.code, problem.message, status_code=code)


class McpServerCreateAPIView(OrgAPIMixin, APIView):
    @extend_schema(
        tags=["connections"],
        summary="Add an MCP server (by URL, or a pinned stdio package); checked first",
        description="Grantry lists the server's tools with the credential before anything is "
        "saved; a server that refuses it or cannot be reached answers 400 and nothing is "
        "saved. The tools start as `new`: approve them (tools/…/approve/).",
        request=McpServerCreateSerializer,
        responses={201: ConnectionSerializer, **error_responses(400, 403, 404)},
    )
    def post(self, request: Request, org_slug: str) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        body = McpServerCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        form = _form(self, dict(body.validated_data))
        try:
            connection, _ = mcp_connection_create(
                organization=self.organization,
                name=form.cleaned_data["name"],
                server=form.server(),
                actor=request.user,
            )
        except GatewayProblem as problem:
            raise _problem(problem) from None
        return Response(ConnectionSerializer(connection).data, status=status.HTTP_201_CREATED)


class McpOAuthStartAPIView(OrgAPIMixin, APIView):
    @extend_schema(
        tags=["connections"],
        summary="Add an MCP server with OAuth: returns the authorization URL to open",
        description="Grantry discovers the server's authorization server and registers "
        "itself, saves the connection waiting for consent, and returns the URL to open in "
        "a browser signed in to Grantry as the same person.",
        request=McpOAuthStartSerializer,
        responses={201: McpOAuthStartResponseSerializer, **error_responses(400, 403, 404)},
    )
    def post(self, request: Request, org_slug: str) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        body = McpOAuthStartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        form = _form(self, {**body.validated_data, "transport": "http", "auth": McpAuth.OAUTH})
        session_key = None
        if not isinstance(request.auth, PersonalAPIToken):
            if not request.session.session_key:
                request.session.save()
            session_key = request.session.session_key
        try:
            url = mcp_oauth_start(
                organization=self.organization,
                name=form.cleaned_data["name"],
                url=form.cleaned_data["url"].strip(),
                actor=request.user,
                session_key=session_key,
            )
        except GatewayProblem as problem:
            raise _problem(problem) from None
        response = Response(
            {
                "authorization_url": url,
                "expires_in": int(OAUTH_STATE_TTL.total_seconds()),
                "name": form.cleaned_data["name"],
            },
            status=status.HTTP_201_CREATED,
        )
        response["Cache-Control"] = "no-store"
        return response


class _McpScope(OrgAPIMixin):
    model = Connection

    def scope_queryset(self) -> QuerySet[Any]:
        return super().scope_queryset().filter(provider_key=MCP_PROVIDER_KEY)

    def connection(self, connection_id: int) -> Connection:
        return get_object_or_404(self.scope_queryset(), pk=connection_id)


class McpToolListAPIView(_McpScope, APIView):
    @extend_schema(
        tags=["connections"],
        summary="An MCP connection's tools, with their state and digests",
        responses={200: McpToolSerializer(many=True), **error_responses(400, 403, 404)},
    )
    def get(self, request: Request, org_slug: str, connection_id: int) -> Response:  # noqa: ARG002 - URL kwargs, passed by name
        connection = self.connection(connection_id)
        tools = self.tenant_rows(McpTool).filter(connection=connection)
        return Response(McpToolSerializer(tools, many=True).data)


class McpToolApproveAPIView(_McpScope, APIView):
    @extend_schema(
        tags=["connections"],
        summary="Approve the definition of one tool you reviewed (pinned by its digest)",
        request=McpApproveSerializer,
        responses={200: McpToolSerializer, **error_responses(400, 403, 404, 409)},
    )
    def post(self, request: Request, org_slug: str, connection_id: int, tool_id: int) -> Response:  # noqa: ARG002 - URL kwargs, passed by name
        connection = self.connection(connection_id)
        body = McpApproveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        get_object_or_404(self.tenant_rows(McpTool).filter(connection=connection), pk=tool_id)
        try:
            tool = mcp_tool_approve(
                tool_id=tool_id,
                organization_id=self.organization.pk,
                digest=body.validated_data["digest"],
                actor=request.user,
            )
        except ToolApprovalRefused as exc:
            raise APIError("conflict", str(exc), status_code=status.HTTP_409_CONFLICT) from None
        return Response(McpToolSerializer(tool).data)


class McpRefreshAPIView(_McpScope, APIView):
    @extend_schema(
        tags=["connections"],
        summary="List an MCP connection's tools again (new, changed, removed)",
        request=None,
        responses={200: McpRefreshSerializer, **error_responses(403, 404, 409, 502)},
    )
    def post(self, request: Request, org_slug: str, connection_id: int) -> Response:  # noqa: ARG002 - URL kwargs, passed by name
        connection = self.connection(connection_id)
        try:
            report = mcp_tools_refresh(connection_id=connection.pk)
        except custody.NeedsReauth as exc:
            raise APIError("needs_reauth", str(exc), status_code=status.HTTP_409_CONFLICT) from None
        except GatewayProblem as problem:
            raise _problem(problem) from None
        return Response(
            {
                "total": report.total,
                "new": report.new,
                "changed": report.changed,
                "removed": report.removed,
                "skipped": report.skipped,
            }
        )
