"""Custody: the SaaS credentials an organization holds.

Secret columns are encrypted at rest (django-cryptography fields, keyed by
GRANTRY_ENCRYPTION_KEY through `apps.connections.keyring`). Only
`apps.connections.custody` reads them; `__str__`/`__repr__` never show them."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_cryptography.fields import encrypt

from apps.core.models import TenantModel, TenantQuerySet, organization_key

SECRET_FIELDS = {
    "Connection": ("access_token", "refresh_token", "api_key"),
    "ProviderApp": ("client_secret",),
    "OAuthState": ("code_verifier",),
    "RetiredCredential": ("secret",),
    "McpServer": ("env_secrets", "oauth_client_secret"),
}


# What a rule says for "the personal connection of the member the worker acts for"
# (apps.policies); no connection may take this name.
ON_BEHALF_OF = "on_behalf_of"


class ConnectionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    NEEDS_REAUTH = "needs_reauth", "Needs re-auth"
    REVOKED = "revoked", "Revoked"
    ERROR = "error", "Error"


class RevocationResult(models.TextChoices):
    NONE = "", "—"
    REVOKED = "revoked", "Revoked at the provider"
    FAILED = "failed", "Revocation failed"
    UNSUPPORTED = "unsupported", "Provider has no revocation endpoint"


class ProviderApp(TenantModel):
    """An organization's own OAuth client at one provider (no shared Grantry app)."""

    organization = organization_key(related_name="provider_apps")
    provider_key = models.CharField(max_length=60)
    client_id = models.CharField(max_length=300)
    client_secret = encrypt(models.TextField(blank=True, default=""))

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "provider_key"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "provider_key"], name="uniq_provider_app"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider_key} app of {self.organization_id}"

    def __repr__(self) -> str:
        return f"<ProviderApp {self.pk} {self.provider_key}>"

    def has_secret(self) -> bool:
        # isnull-style check on the encrypted value without exposing it.
        return bool(self.client_secret)


class ConnectionQuerySet(TenantQuerySet["Connection"]):
    def usable(self) -> ConnectionQuerySet:
        return self.filter(status=ConnectionStatus.ACTIVE)

    def shared(self) -> ConnectionQuerySet:
        """The organization's own connections: no member's personal one."""
        return self.filter(owner__isnull=True)

    def personal_of(self, user: Any) -> ConnectionQuerySet:
        return self.filter(owner=user)

    def visible_to(self, *, user: Any, sees_all: bool) -> ConnectionQuerySet:
        """What a member may see: the shared connections and their own personal ones;
        admins (`sees_all`) see every member's personal connections too."""
        if sees_all:
            return self
        return self.filter(Q(owner__isnull=True) | Q(owner=user))

    def refresh_due(self, *, now: datetime | None = None) -> ConnectionQuerySet:
        """Active OAuth connections that expire soon, or whose refresh token has
        not been used for GRANTRY_REFRESH_KEEPALIVE_DAYS (some providers expire
        idle refresh tokens). Candidates: for a token shorter than twice the window,
        `is_refresh_due` (checked again under the row lock) narrows it to half its life."""
        now = now or timezone.now()
        soon = now + timedelta(seconds=settings.GRANTRY_REFRESH_AHEAD_SECONDS)
        idle = now - timedelta(days=settings.GRANTRY_REFRESH_KEEPALIVE_DAYS)
        return (
            self.usable()
            .filter(auth_type="oauth2", has_refresh_token=True)
            .filter(
                Q(expires_at__lte=soon)
                | Q(last_refreshed_at__lte=idle)
                | Q(last_refreshed_at__isnull=True, created_at__lte=idle)
            )
        )


class Connection(TenantModel):
    organization = organization_key(related_name="connections")
    provider_key = models.CharField(max_length=60)
    name = models.SlugField(max_length=60, help_text="Unique name within the organization.")
    auth_type = models.CharField(max_length=16)  # providers.catalog.AuthType
    provider_app = models.ForeignKey(
        ProviderApp, on_delete=models.SET_NULL, null=True, blank=True, related_name="connections"
    )
    account_label = models.CharField(max_length=200, blank=True)
    scopes = models.JSONField(default=list, blank=True)
    # Non-secret values that shape the upstream URL, e.g. {"subdomain": "acme"} for Zendesk.
    base_url_params = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=ConnectionStatus.choices, default=ConnectionStatus.ACTIVE
    )
    status_detail = models.CharField(max_length=300, blank=True)

    access_token = encrypt(models.TextField(blank=True, default=""))
    refresh_token = encrypt(models.TextField(blank=True, default=""))
    api_key = encrypt(models.TextField(blank=True, default=""))
    # Plain flag so queries can select refreshable rows without decrypting.
    has_refresh_token = models.BooleanField(default=False)
    token_type = models.CharField(max_length=40, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    refresh_failures = models.PositiveIntegerField(default=0)
    last_refresh_error = models.CharField(max_length=300, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    revoked_at = models.DateTimeField(null=True, blank=True)
    revocation_result = models.CharField(
        max_length=16, choices=RevocationResult.choices, blank=True, default=""
    )
    # A personal connection: one member's own account at the provider, connected by
    # that member. Visible to them and to admins only, and used only by a worker that
    # acts for them under a rule that says `connection: on_behalf_of` (never by a rule
    # that names a connection or any connection of the provider). CASCADE, not
    # SET_NULL: a personal credential must never become the organization's.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        editable=False,
        related_name="personal_connections",
    )

    objects = ConnectionQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="uniq_connection_name")
        ]
        indexes = [models.Index(fields=["status", "expires_at"], name="conn_status_expiry")]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider_key})"

    def __repr__(self) -> str:
        return f"<Connection {self.pk} {self.provider_key}:{self.name} {self.status}>"

    def is_oauth(self) -> bool:
        return self.auth_type == "oauth2"

    def is_personal(self) -> bool:
        return self.owner_id is not None

    def refresh_ahead_seconds(self, window: float) -> float:
        """How long before expiry to refresh: `window`, but at most half the token's
        lifetime (issued at `last_refreshed_at`), so a provider issuing tokens shorter
        than the window does not get a refresh on every call."""
        issued = self.last_refreshed_at or self.created_at
        if self.expires_at is None or issued is None:
            return window
        lifetime = (self.expires_at - issued).total_seconds()
        return max(0.0, min(window, lifetime / 2))

    def is_expired(self, *, leeway: float = 0, now: datetime | None = None) -> bool:
        if not self.is_oauth() or self.expires_at is None:
            return False
        return self.expires_at <= (now or timezone.now()) + timedelta(seconds=leeway)

    def is_refresh_due(self, *, now: datetime | None = None) -> bool:
        """Same rule as ConnectionQuerySet.refresh_due, for one row."""
        if self.status != ConnectionStatus.ACTIVE or not self.is_oauth():
            return False
        if not self.has_refresh_token:
            return False
        now = now or timezone.now()
        ahead = self.refresh_ahead_seconds(settings.GRANTRY_REFRESH_AHEAD_SECONDS)
        if self.is_expired(leeway=ahead, now=now):
            return True
        idle_since = self.last_refreshed_at or self.created_at
        return idle_since <= now - timedelta(days=settings.GRANTRY_REFRESH_KEEPALIVE_DAYS)


OAUTH_STATE_TTL = timedelta(minutes=10)


def _state_expiry() -> datetime:
    return timezone.now() + OAUTH_STATE_TTL


class OAuthStateQuerySet(models.QuerySet["OAuthState"]):
    def unused(self) -> OAuthStateQuerySet:
        return self.filter(used_at__isnull=True)


class OAuthState(models.Model):
    """One authorization attempt: single use, bound to the browser session and the
    user who started it, valid for 10 minutes. The PKCE verifier stays here.
    Started from the management API (personal token, no browser session), it is
    bound to the user only: `session_digest` is empty."""

    state_digest = models.CharField(max_length=64, unique=True)
    session_digest = models.CharField(max_length=64)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="+"
    )
    provider_key = models.CharField(max_length=60)
    connection_name = models.SlugField(max_length=60)
    # A member connecting their own account: the connection gets `user` as its owner.
    personal = models.BooleanField(default=False)
    # Set when re-authorizing an existing connection (Reconnect).
    reconnect = models.ForeignKey(
        Connection, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    redirect_uri = models.CharField(max_length=500)
    requested_scopes = models.JSONField(default=list, blank=True)
    # Non-secret URL parameters for the new connection (e.g. a Zendesk subdomain).
    base_url_params = models.JSONField(default=dict, blank=True)
    code_verifier = encrypt(models.TextField())
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(default=_state_expiry)
    used_at = models.DateTimeField(null=True, blank=True)

    objects = OAuthStateQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"OAuth state for {self.provider_key} ({self.connection_name})"

    def __repr__(self) -> str:
        return f"<OAuthState {self.pk} {self.provider_key}>"

    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @staticmethod
    def digest(value: str) -> str:
        return hashlib.sha256(value.encode()).hexdigest()

    def as_audit_metadata(self) -> dict[str, Any]:
        return {"provider": self.provider_key, "connection_name": self.connection_name}


class RetiredCredentialQuerySet(TenantQuerySet["RetiredCredential"]):
    def held(self) -> RetiredCredentialQuerySet:
        """Keys still kept for the check that they are dead."""
        return self.filter(purged_at__isnull=True)


class RetiredCredential(TenantModel):
    """An API key taken off a connection when an admin gave it a new one. It is kept,
    encrypted, only until the provider confirms that it no longer works (401/403), so
    that Grantry can make that check; then the secret is blanked (`purged_at`).
    Read only through `custody`."""

    organization = organization_key(related_name="retired_credentials")
    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="retired_credentials"
    )
    provider_key = models.CharField(max_length=60)
    base_url_params = models.JSONField(default=dict, blank=True)
    secret = encrypt(models.TextField(blank=True, default=""))
    confirmed_dead_at = models.DateTimeField(null=True, blank=True)
    last_check = models.CharField(max_length=300, blank=True)
    purged_at = models.DateTimeField(null=True, blank=True)

    objects = RetiredCredentialQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"retired key of {self.connection_id} ({self.provider_key})"

    def __repr__(self) -> str:
        state = "purged" if self.purged_at else "held"
        return f"<RetiredCredential {self.pk} connection={self.connection_id} {state}>"


# The MCP gateway's models live in their own module (a kind of connection, and its tools).
from apps.connections.mcp_models import (  # noqa: E402 - registered with this app's models
    MCP_PROVIDER_KEY as MCP_PROVIDER_KEY,
)
from apps.connections.mcp_models import McpServer as McpServer  # noqa: E402 - as above
from apps.connections.mcp_models import McpTool as McpTool  # noqa: E402 - as above
