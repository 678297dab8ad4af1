"""MCP OAuth: an organization's policy for OAuth clients, and the grants its members
approved (client X may act as worker W with role R).

The OAuth client itself is django-oauth-toolkit's `Application` (registered by a
Client ID Metadata Document or RFC 7591 Dynamic Client Registration); the access
token it gets is a `WorkerToken` (so `/mcp` authenticates it exactly like a static
token), and DOT's own rows (grant codes, refresh tokens with their family) carry the
protocol state. `McpIssuedToken` ties each issued worker token to its grant and
refresh-token family.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.http.request import validate_host

from apps.core.models import TenantModel, TenantQuerySet

DEFAULT_TOKEN_MINUTES = 60
MAX_TOKEN_MINUTES = 24 * 60


class McpPolicy(models.Model):
    """One organization's rules for OAuth clients (absent row = the defaults)."""

    organization = models.OneToOneField(
        "organizations.Organization", on_delete=models.CASCADE, related_name="mcp_policy"
    )
    clients_allowed = models.BooleanField(
        default=True, help_text="Members with the Admin role may connect OAuth (MCP) clients."
    )
    allowed_clients = models.TextField(
        blank=True,
        help_text=(
            "One per line: a client-id host (claude.ai, .example.com for a domain and its "
            "subdomains) or a full client-id URL. Empty: any client. When set, only clients "
            "with a matching metadata-document URL may connect (dynamically registered "
            "clients have no verifiable id and are refused)."
        ),
    )
    # Members (any role) may connect their own MCP clients: each gets a worker that acts
    # for that member (apps.workers.models.Worker.acts_for) with this role. None: only
    # admins connect clients.
    member_role = models.ForeignKey(
        "policies.Role",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Members may connect their own MCP clients, each as a worker acting for "
        "them with this role (their personal connections where a rule says on behalf of). "
        "Empty: only admins connect clients.",
    )
    token_minutes = models.PositiveIntegerField(
        default=DEFAULT_TOKEN_MINUTES,
        validators=[MinValueValidator(5), MaxValueValidator(MAX_TOKEN_MINUTES)],
        help_text="Lifetime of each OAuth access token, in minutes (refresh gets a new one).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"MCP policy of {self.organization_id}"

    def allowlist(self) -> list[str]:
        return [line.strip() for line in self.allowed_clients.splitlines() if line.strip()]

    def allows(self, client_id: str) -> bool:
        """Whether a client with this id may be bound to a worker of the org."""
        if not self.clients_allowed:
            return False
        entries = self.allowlist()
        if not entries:
            return True
        if not client_id.startswith("https://"):
            return False  # a DCR id says nothing about who the client is
        host = urlsplit(client_id).hostname or ""
        hosts = [e for e in entries if "://" not in e]
        return client_id in entries or bool(host and validate_host(host, hosts))


class McpGrantQuerySet(TenantQuerySet["McpGrant"]):
    def active(self) -> McpGrantQuerySet:
        return self.filter(revoked_at__isnull=True)


class McpGrant(TenantModel):
    """A member let an OAuth client act as one worker (with one role)."""

    created_by = None  # `approved_by` is the member who let the client in
    worker = models.ForeignKey("workers.Worker", on_delete=models.CASCADE, related_name="+")
    role = models.ForeignKey("policies.Role", on_delete=models.PROTECT, related_name="+")
    application = models.ForeignKey(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL,
        on_delete=models.CASCADE,
        related_name="mcp_grants",
    )
    # Snapshots, so the list still reads right once a CIMD document changes its name.
    client_id = models.CharField(max_length=255)
    client_name = models.CharField(max_length=255, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    revoke_reason = models.CharField(max_length=200, blank=True)

    objects = McpGrantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.label} as {self.worker_id}"

    @property
    def label(self) -> str:
        return self.client_name or self.client_id

    def is_active(self) -> bool:
        return self.revoked_at is None


class McpClientRegistration(models.Model):
    """What RFC 7591 registration metadata Grantry keeps beyond DOT's Application."""

    application = models.OneToOneField(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL,
        on_delete=models.CASCADE,
        related_name="mcp_registration",
    )
    # OpenID Connect Dynamic Client Registration 1.0 §2: "web" (the default) or "native".
    application_type = models.CharField(max_length=10, default="web")

    def __str__(self) -> str:
        return f"registration of {self.application_id}"


class McpIssuedToken(models.Model):
    """One access token issued to a grant, and the refresh-token family it belongs to."""

    # Owned through its grant's organization (apps.core.models.tenant_rows).
    tenant_through = "grant"

    grant = models.ForeignKey(McpGrant, on_delete=models.CASCADE, related_name="issued")
    worker_token = models.OneToOneField(
        "workers.WorkerToken", on_delete=models.CASCADE, related_name="+"
    )
    token_family = models.UUIDField(default=uuid.uuid4, db_index=True)
    # sha256 of the authorization code this token was bought with (empty for a refresh):
    # a second use of the code revokes what the first one got (RFC 6749 §4.1.2).
    code_digest = models.CharField(max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"token {self.worker_token_id} of grant {self.grant_id}"
