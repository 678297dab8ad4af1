"""Agent identity: workers and the scoped tokens that say "this worker, this role".

Only a SHA-256 digest of a token is stored (see apps.core.tokens). A token
is usable when it is not revoked, not expired, and its worker is active.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from apps.core.models import (
    IssuedToken,
    IssuedTokenQuerySet,
    TenantModel,
    TenantQuerySet,
    organization_key,
)
from apps.core.tokens import EXPIRY_WARNING_DAYS


class WorkerStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DISABLED = "disabled", "Disabled"


class Worker(TenantModel):
    organization = organization_key(related_name="workers")
    name = models.SlugField(max_length=60, help_text="Unique within the organization.")
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The member responsible for this worker.",
    )
    status = models.CharField(
        max_length=16, choices=WorkerStatus.choices, default=WorkerStatus.ACTIVE
    )
    default_role = models.ForeignKey(
        "policies.Role",
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The role new tokens get unless another is chosen at mint.",
    )
    # "Alice's coding agent": the member this worker acts for. Where a rule says
    # `connection: on_behalf_of`, its calls use that member's personal connection of the
    # action's provider, and every audit event of the worker names both. The agent
    # authenticator refuses the worker's tokens once the member has left the
    # organization or is disabled (apps.workers.auth), and both of those disable it
    # (apps.workers.services.member_agents_stop). PROTECT: deleting the person must not
    # quietly turn their agent into nobody's.
    acts_for = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="agents",
        help_text="The member this worker acts for: rules with connection "
        "'on_behalf_of' use that member's personal connections.",
    )
    require_dpop = models.BooleanField(
        default=False,
        verbose_name="Require DPoP",
        help_text="Its tokens work only with a DPoP proof signed by the key each was bound to "
        "(RFC 9449): a stolen token alone is useless. Unbound tokens of it are refused and "
        "none are issued.",
    )

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="uniq_worker_name")
        ]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Worker {self.pk} {self.name!r} org={self.organization_id} {self.status}>"

    def is_active(self) -> bool:
        return self.status == WorkerStatus.ACTIVE

    def separation_of_duties_ids(self) -> set[int]:
        """People who may not approve this worker's requests: its owner and creator, and
        the member it acts for (the call would run as their own account), in
        apps.approvals; also read by apps.policies when a rule is saved."""
        return {i for i in (self.owner_id, self.created_by_id, self.acts_for_id) if i is not None}


class TrustPreset(models.TextChoices):
    """Where the outside identity comes from (apps.workers.trust has each one's rules)."""

    GITHUB = "github", "GitHub Actions"
    GITLAB = "gitlab", "GitLab CI"
    KUBERNETES = "kubernetes", "Kubernetes service account"
    OIDC = "oidc", "Any OpenID Connect issuer"
    # MCP's enterprise-managed authorization: the company's identity provider issues
    # Identity Assertion JWT Authorization Grants (ID-JAG) for the MCP clients it allows,
    # presented with the RFC 7523 jwt-bearer grant (apps.mcpauth.idjag).
    IDJAG = "idjag", "Company IdP for MCP clients (ID-JAG)"


MAX_TRUST_MINUTES = 12 * 60


class TrustPolicy(TenantModel):
    """ "Tokens from `issuer` for `audience` whose claims match `conditions` may become
    this worker with `role`, for at most `max_minutes`" (workload identity federation;
    the exchange is RFC 8693 at the OAuth token endpoint, apps.mcpauth.exchange).
    `conditions` is a list of {"claim": name, "value": exact value or fnmatch glob}, all
    of which must match; never empty for a workload platform (apps.workers.trust checks it).
    The ID-JAG preset (a company IdP vouching for its people's MCP clients) may have no
    condition, and names the MCP clients it lets in: `clients`, exact OAuth client ids the
    assertion's `client_id` must be one of (empty for every other preset)."""

    organization = organization_key(related_name="trust_policies")
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="trust_policies")
    preset = models.CharField(max_length=16, choices=TrustPreset.choices)
    issuer = models.URLField(max_length=255)
    audience = models.CharField(max_length=255)
    conditions = models.JSONField(default=list)
    clients = models.JSONField(default=list, blank=True)
    role = models.ForeignKey("policies.Role", on_delete=models.PROTECT, related_name="+")
    max_minutes = models.PositiveIntegerField(
        default=15, validators=[MinValueValidator(1), MaxValueValidator(MAX_TRUST_MINUTES)]
    )
    enabled = models.BooleanField(default=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["worker", "id"]

    def __str__(self) -> str:
        return f"{self.get_preset_display()} {self.issuer} → {self.worker_id}"

    def __repr__(self) -> str:
        return f"<TrustPolicy {self.pk} worker={self.worker_id} {self.issuer!r}>"


class WorkerTokenQuerySet(IssuedTokenQuerySet["WorkerToken"]):
    # usable(): not revoked and not expired (the worker's status is checked separately).

    def expiring(self, *, within: timedelta, now: datetime | None = None) -> WorkerTokenQuerySet:
        """Usable tokens that end within `within`, but not the access tokens of MCP OAuth
        clients: those live an hour and their client replaces them with its refresh
        token, so their expiry needs nobody's attention."""
        now = now or timezone.now()
        return self.usable(now=now).filter(
            expires_at__lte=now + within, oauth_client="", trust_policy__isnull=True
        )


class WorkerToken(IssuedToken):
    organization = organization_key(related_name="worker_tokens")
    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="tokens")
    role = models.ForeignKey("policies.Role", on_delete=models.PROTECT, related_name="+")
    # public_id, digest, last4, expires_at, revoked_at, last_used_at: IssuedToken's.
    # What the token is for, as whoever minted it put it ("CI deploy bot"). Required
    # when minting; tokens minted before names existed have "".
    name = models.CharField(max_length=100, blank=True, default="")
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    revoke_reason = models.CharField(max_length=200, blank=True)
    rolled_from = models.OneToOneField(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="rolled_to"
    )
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)
    expiry_warned_at = models.DateTimeField(null=True, blank=True)
    # Set on tokens issued by Grantry's MCP authorization server (apps.mcpauth): the one
    # resource URL the token is valid for (RFC 8707) and the OAuth client it was issued
    # to. Static tokens have neither and work on every agent surface.
    audience = models.CharField(max_length=255, blank=True, editable=False)
    oauth_client = models.CharField(max_length=255, blank=True, editable=False)
    # Set on tokens minted by a token exchange (apps.mcpauth.exchange): the trust policy that
    # let the outside identity in. They live minutes, so nobody is warned of their expiry;
    # deleting the policy revokes them.
    trust_policy = models.ForeignKey(
        TrustPolicy,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="tokens",
    )

    # The RFC 7638 thumbprint of the public key the token is bound to (DPoP, RFC 9449;
    # apps.workers.dpop): set when it is obtained, never changed. "" for a bearer token.
    dpop_jkt = models.CharField(max_length=43, blank=True, default="", editable=False)

    objects = WorkerTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "-id"], name="workertoken_org_id")]

    def __str__(self) -> str:
        return f"{self.public_id} (…{self.last4})"

    def __repr__(self) -> str:
        return f"<WorkerToken {self.public_id} worker={self.worker_id} role={self.role_id}>"

    def separation_of_duties_ids(self) -> set[int]:
        """People who may not approve a request made with this token: the worker's
        owner and creator, and whoever minted the token."""
        ids = self.worker.separation_of_duties_ids()
        if self.created_by_id is not None:
            ids.add(self.created_by_id)
        return ids

    def is_usable(self, now: datetime | None = None) -> bool:
        return not self.is_revoked() and not self.is_expired(now) and self.worker.is_active()

    def expires_soon(self, now: datetime | None = None) -> bool:
        """The rule of `WorkerTokenQuerySet.expiring`, for one token."""
        now = now or timezone.now()
        return (
            not self.is_revoked()
            and not self.is_expired(now)
            and not self.oauth_client
            and self.trust_policy_id is None
            and self.expires_at <= now + timedelta(days=EXPIRY_WARNING_DAYS)
        )

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.oauth_client:
            return f"MCP client {self.oauth_client}"
        return "(no name)"

    @property
    def status(self) -> str:
        if self.is_revoked():
            return "revoked"
        if self.is_expired():
            return "expired"
        return "active"
