"""Human approval of one exact agent call, and the organization's approval settings.

An `Approval` is bound to everything that makes a call that call: organization,
worker, token, action (or proxy method and path), connection, the input's
digest, the role and its rules version, and an expiry. It is used at most
once. The rules for changing it live in apps.approvals.services."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from django_cryptography.fields import encrypt

from apps.core.models import TenantModel, TenantQuerySet, organization_key


def new_public_id() -> str:
    return "apr_" + secrets.token_urlsafe(15)


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    EXPIRED = "expired", "Expired"
    EXECUTED = "executed", "Executed"
    # The role's rules changed after the request: the approval no longer means anything.
    VOID = "void", "Void (rules changed)"


OPEN_STATUSES = (ApprovalStatus.PENDING, ApprovalStatus.APPROVED)


class ApprovalKind(models.TextChoices):
    ACTION = "action", "Action"
    PROXY = "proxy", "Proxy call"


class ApprovalQuerySet(TenantQuerySet["Approval"]):
    def visible_to(self, membership: Any) -> ApprovalQuerySet:
        """Reviewers and up see the organization's queue; a plain member only the
        requests a rule names them to approve."""
        mine = self.for_organization(membership.organization)
        if membership.can_review():
            return mine
        return mine.filter(approver_ids__contains=[membership.user_id])

    def past_expiry(self, now: datetime) -> ApprovalQuerySet:
        return self.filter(status__in=OPEN_STATUSES, expires_at__lte=now)


class Approval(TenantModel):
    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    organization = organization_key(related_name="approvals")
    created_by = None  # an agent asks for an approval, not a person
    worker = models.ForeignKey("workers.Worker", on_delete=models.CASCADE, related_name="approvals")
    token_public_id = models.CharField(max_length=32)
    # SET_NULL: a deleted role voids its approvals (the claim checks the role).
    role = models.ForeignKey(
        "policies.Role", on_delete=models.SET_NULL, null=True, related_name="+"
    )
    rules_version = models.PositiveBigIntegerField()
    rule_id = models.BigIntegerField(
        null=True, blank=True
    )  # the rule that asked (rules are rewritten)
    rule_words = models.TextField(blank=True)
    kind = models.CharField(max_length=8, choices=ApprovalKind.choices)
    action_name = models.CharField(max_length=160, blank=True)
    method = models.CharField(max_length=10, blank=True)
    path = models.CharField(max_length=500, blank=True)
    connection = models.ForeignKey(
        "connections.Connection", on_delete=models.SET_NULL, null=True, related_name="+"
    )
    connection_name = models.CharField(max_length=120, blank=True)
    input_digest = models.CharField(max_length=64)
    # The input as the record keeps it: exact when the organization stores broker input,
    # else its shape with every value redacted (see services.redact_input).
    input = models.JSONField(null=True, blank=True)
    input_stored = models.BooleanField(default=False)
    # The call's exact input (JSON), encrypted, kept only while the request is pending so
    # that eligible approvers decide on real values whatever the organization stores;
    # emptied when it is decided, executed, expired or voided (services._set_status).
    sealed_input = encrypt(models.TextField(blank=True, default=""))
    # Keyed hashes of each input value by path (services.input_fingerprints): what the
    # diff against earlier calls compares once their values are gone.
    input_fingerprints = models.JSONField(default=dict, blank=True)
    # sha256 over every binding but the expiry: one pending request per call and token.
    call_digest = models.CharField(max_length=64)
    idempotency_key = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True, help_text="Why the agent asks, in its own words.")
    summary = models.TextField(help_text="What is asked, in plain words.")
    # Named approvers from the rule (user ids); empty: admins and owners.
    approver_ids = models.JSONField(default=list, blank=True)
    approvals_needed = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(
        max_length=10, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING
    )
    request_id = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    executed_at = models.DateTimeField(null=True, blank=True)

    objects = ApprovalQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["organization", "status", "-id"], name="approval_org_status"),
            models.Index(
                fields=["expires_at"],
                name="approval_open_expiry",
                condition=models.Q(status__in=["pending", "approved"]),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    status__in=["pending", "approved", "denied", "expired", "executed", "void"]
                ),
                name="approval_status_valid",
            ),
            # Idempotent requests: while pending, one approval per token and call …
            models.UniqueConstraint(
                fields=["token_public_id", "call_digest"],
                condition=models.Q(status="pending"),
                name="approval_one_pending_per_call",
            ),
            # … and one per token and Idempotency-Key.
            models.UniqueConstraint(
                fields=["token_public_id", "idempotency_key"],
                condition=models.Q(status="pending") & ~models.Q(idempotency_key=""),
                name="approval_one_pending_per_key",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id

    def __repr__(self) -> str:
        return f"<Approval {self.public_id} {self.status} org={self.organization_id}>"

    def effective_status(self, now: datetime | None = None) -> str:
        """The status an agent or approver should see: an open approval past its
        expiry is expired even before the periodic task has marked it."""
        if self.status in OPEN_STATUSES and self.expires_at <= (now or timezone.now()):
            return ApprovalStatus.EXPIRED
        return self.status

    def what(self) -> str:
        if self.kind == ApprovalKind.PROXY:
            return f"{self.method} {self.path}"
        return self.action_name


class ApprovalDecision(models.Model):
    # Owned through its approval's organization (apps.core.models.tenant_rows).
    tenant_through = "approval"
    approval = models.ForeignKey(Approval, on_delete=models.CASCADE, related_name="decisions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    user_label = models.CharField(max_length=200)
    approve = models.BooleanField()
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["approval", "id"]
        constraints = [
            models.UniqueConstraint(fields=["approval", "user"], name="approval_one_decision_each")
        ]

    def __str__(self) -> str:
        return f"{'approve' if self.approve else 'deny'} by {self.user_label}"


class ApprovalSettings(models.Model):
    """Per organization. The webhook URL and secret are encrypted at rest and read
    only by apps.approvals.notify; pages and APIs say whether they are set, never
    what they are (a Slack incoming-webhook URL is itself a credential)."""

    organization = models.OneToOneField(
        "organizations.Organization", on_delete=models.CASCADE, related_name="approval_settings"
    )
    require_two_approvers = models.BooleanField(
        default=False, help_text="Every approval needs two different approvers."
    )
    webhook_url = encrypt(models.TextField(blank=True, default=""))
    webhook_secret = encrypt(models.TextField(blank=True, default=""))
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Approval settings of {self.organization_id}"

    def __repr__(self) -> str:
        return f"<ApprovalSettings org={self.organization_id}>"


class WebhookEventStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    SKIPPED = "skipped", "Skipped (no webhook configured)"
    FAILED = "failed", "Failed (gave up)"


class ApprovalWebhookEvent(models.Model):
    """One webhook event of an approval, its payload built when the event happened
    (so it says what was true then), delivered in order with the approval's other
    events by apps.approvals.notify.deliver_webhook."""

    # Owned through its approval's organization (apps.core.models.tenant_rows).
    tenant_through = "approval"

    approval = models.ForeignKey(Approval, on_delete=models.CASCADE, related_name="webhook_events")
    event = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(
        max_length=10, choices=WebhookEventStatus.choices, default=WebhookEventStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["approval", "id"]
        indexes = [
            models.Index(
                fields=["approval", "id"],
                name="approval_webhook_pending",
                condition=models.Q(status="pending"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} of {self.approval_id} ({self.status})"


class ApprovalLink(models.Model):
    """A signed, single-use, expiring link in an approver's email. Opening it (while
    logged in as that approver) leads to the approval's page; it never decides."""

    # Owned through its approval's organization (apps.core.models.tenant_rows).
    tenant_through = "approval"

    approval = models.ForeignKey(Approval, on_delete=models.CASCADE, related_name="links")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key_digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"link to {self.approval_id} for {self.user_id}"
