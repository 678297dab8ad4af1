"""Upstream MCP servers: a kind of connection, and the tool definitions it pinned.

An MCP connection is a `Connection` with `provider_key="mcp"`; its credential is
held like any other (an OAuth token pair, a static bearer or API key header, or for
a stdio server the secrets mapped to its environment), and `McpServer` says where
the server is and how to reach it. `McpTool` is one tool the server lists, with
the definition an admin approved and its digest: a call to a tool whose current
definition differs from the approved one is refused until an admin approves again.
Secret columns (`env_secrets`, `oauth_client_secret`) are encrypted and read only by
`apps.connections.custody`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django_cryptography.fields import encrypt

from apps.core.models import TenantModel, TenantQuerySet, organization_key
from apps.providers.catalog import AuthType, Provider

MCP_PROVIDER_KEY = "mcp"  # Connection.provider_key of every MCP connection
# The fields of a tool definition an agent's model reads; their canonical JSON is pinned.
PINNED_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")


class McpTransport(models.TextChoices):
    HTTP = "http", "Streamable HTTP"
    STDIO = "stdio", "stdio (run by Grantry)"


class McpAuth(models.TextChoices):
    NONE = "none", "No credential"
    OAUTH = "oauth2", "OAuth (Grantry is the client)"
    STATIC = "api_key", "Bearer token or API key header"
    ENV = "env", "Secrets in the server's environment (stdio)"


class McpServer(models.Model):
    """Where an MCP connection's server is and how Grantry talks to it."""

    # Owned through its connection's organization (apps.core.models.tenant_rows).
    tenant_through = "connection"

    connection = models.OneToOneField(
        "connections.Connection",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="mcp_server",
    )
    transport = models.CharField(max_length=8, choices=McpTransport.choices)
    # Streamable HTTP
    url = models.URLField(max_length=500, blank=True)
    header_name = models.CharField(max_length=100, blank=True, default="Authorization")
    header_prefix = models.CharField(max_length=40, blank=True, default="Bearer ")
    # stdio: a pinned npm package (apps.isolation.packages) and its arguments
    package = models.CharField(max_length=300, blank=True)  # "@scope/pkg@1.2.3"
    args = models.JSONField(default=list, blank=True)
    # {"GITHUB_PERSONAL_ACCESS_TOKEN": "<secret>"}, as JSON; the names are in env_names.
    env_secrets = encrypt(models.TextField(blank=True, default=""))
    env_names = models.JSONField(default=list, blank=True)
    network = models.BooleanField(
        default=False,
        help_text="Let the server reach the network (see the README: the sandbox then "
        "does not stop its egress).",
    )
    # OAuth: what discovery found (RFC 9728, RFC 8414) and the client Grantry registered
    # (a client ID metadata document, or RFC 7591 dynamic registration).
    oauth_resource = models.URLField(max_length=500, blank=True)
    oauth_issuer = models.URLField(max_length=500, blank=True)
    oauth_authorization_endpoint = models.URLField(max_length=500, blank=True)
    oauth_token_endpoint = models.URLField(max_length=500, blank=True)
    oauth_revocation_endpoint = models.URLField(max_length=500, blank=True)
    oauth_iss_required = models.BooleanField(default=False)
    oauth_scopes = models.JSONField(default=list, blank=True)
    oauth_client_id = models.CharField(max_length=500, blank=True)
    oauth_client_secret = encrypt(models.TextField(blank=True, default=""))
    oauth_client_auth = models.CharField(max_length=40, blank=True, default="none")
    oauth_registration = models.CharField(max_length=8, blank=True)  # "cimd" or "dcr"
    # Health, written by the tool sync (connections.mcp.tools)
    protocol_version = models.CharField(max_length=20, blank=True)
    server_name = models.CharField(max_length=200, blank=True)
    server_version = models.CharField(max_length=100, blank=True)
    tools_listed_at = models.DateTimeField(null=True, blank=True)
    last_ok_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(transport__in=["http", "stdio"]), name="mcp_transport_valid"
            )
        ]

    def __str__(self) -> str:
        return f"MCP server of connection {self.connection_id}"

    def __repr__(self) -> str:
        return f"<McpServer {self.connection_id} {self.transport}>"

    @property
    def target(self) -> str:
        """What the server is, in one line for pages (never a credential)."""
        return self.url if self.transport == McpTransport.HTTP else self.package

    def oauth_provider(self) -> Provider:
        """The server's authorization server as a catalog Provider, so the connect flow,
        refresh and revocation of `apps.connections.oauth` serve it unchanged. The
        resource indicator (RFC 8707) rides on the authorization request."""
        return Provider(
            key=MCP_PROVIDER_KEY,
            display_name=urlsplit(self.url).hostname or "MCP server",
            icon="",
            auth_types=(AuthType.OAUTH2,),
            api_base_url=self.url,
            authorize_url=self.oauth_authorization_endpoint,
            token_url=self.oauth_token_endpoint,
            revocation_url=self.oauth_revocation_endpoint,
            authorize_params={"resource": self.oauth_resource} if self.oauth_resource else {},
            token_endpoint_auth_method=self.oauth_client_auth or "none",
        )

    def issuer_problem(self, iss: str) -> str:
        """Why an authorization response's `iss` is not acceptable (RFC 9207), or "":
        it must be the discovered issuer, and is required when the server said it sends
        one."""
        if iss:
            return "" if iss == self.oauth_issuer else "The answer names another issuer."
        if self.oauth_iss_required:
            return "The authorization server promised an iss parameter and sent none."
        return ""

    def is_healthy(self) -> bool:
        return self.last_ok_at is not None and (
            self.last_error_at is None or self.last_error_at < self.last_ok_at
        )


class McpToolState(models.TextChoices):
    NEW = "new", "New: not approved yet"
    APPROVED = "approved", "Approved (pinned)"
    CHANGED = "changed", "Changed since approval: calls refused"
    REMOVED = "removed", "No longer listed by the server"


def tool_definition(tool: dict[str, Any]) -> dict[str, Any]:
    """The pinned part of a tool as the server lists it (camelCase, as on the wire)."""
    return {key: tool[key] for key in PINNED_FIELDS if tool.get(key) is not None}


def definition_digest(definition: dict[str, Any]) -> str:
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class McpToolQuerySet(TenantQuerySet["McpTool"]):
    def approved(self) -> McpToolQuerySet:
        return self.filter(state=McpToolState.APPROVED)


class McpTool(TenantModel):
    organization = organization_key(related_name="mcp_tools")
    connection = models.ForeignKey(
        "connections.Connection", on_delete=models.CASCADE, related_name="mcp_tools"
    )
    name = models.CharField(max_length=128)
    definition = models.JSONField()  # as last listed (PINNED_FIELDS only)
    digest = models.CharField(max_length=64)
    approved_definition = models.JSONField(null=True, blank=True)
    approved_digest = models.CharField(max_length=64, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    state = models.CharField(max_length=10, choices=McpToolState.choices, default=McpToolState.NEW)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    changed_at = models.DateTimeField(null=True, blank=True)

    objects = McpToolQuerySet.as_manager()

    class Meta:
        ordering = ["connection", "name"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "name"], name="uniq_mcp_tool_name")
        ]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<McpTool {self.pk} {self.name!r} {self.state}>"

    def is_callable(self) -> bool:
        """Approved, and what the server lists now is what was approved."""
        return self.state == McpToolState.APPROVED and self.digest == self.approved_digest

    @property
    def read_only(self) -> bool:
        """The approved definition's readOnlyHint (an admin reviewed it)."""
        annotations = (self.approved_definition or {}).get("annotations") or {}
        return bool(annotations.get("readOnlyHint"))
