"""Tenants: organizations, memberships with an org role, and invitations."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.core.models import TenantModel, TenantQuerySet, organization_key


class Organization(models.Model):
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    # Lowest maximum token lifetime an admin chose (days); None means the hard cap.
    max_token_days = models.PositiveIntegerField(null=True, blank=True)
    store_broker_input = models.BooleanField(
        default=False, help_text="Store raw broker input in audit events (off: digest only)."
    )
    require_mfa = models.BooleanField(
        default=False,
        help_text="Members without a second factor (authenticator app or passkey) are sent "
        "to set one up before they can use the dashboard or the management API.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def audit_retention_months(self) -> int | None:
        """Whole months the audit trail stays live after its month (apps.audit); None:
        kept for ever."""
        from apps.audit.selectors import retention_months

        return retention_months(self.pk)


class OrgRole(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    REVIEWER = "reviewer", "Reviewer"
    MEMBER = "member", "Member"


# What each org role may do. Views name the capability they need, never a role.
ROLE_RANK = {OrgRole.MEMBER: 0, OrgRole.REVIEWER: 1, OrgRole.ADMIN: 2, OrgRole.OWNER: 3}


class MembershipQuerySet(TenantQuerySet["Membership"]):
    def owners(self) -> MembershipQuerySet:
        return self.filter(role=OrgRole.OWNER)


class Membership(TenantModel):
    organization = organization_key(related_name="memberships")
    created_by = None  # who added a member is in the trail
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=OrgRole.choices, default=OrgRole.MEMBER)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="uniq_membership")
        ]
        ordering = ["organization", "user__email"]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"

    def has_at_least(self, role: str) -> bool:
        return ROLE_RANK[OrgRole(self.role)] >= ROLE_RANK[OrgRole(role)]

    def can_manage(self) -> bool:
        """Admins and owners change configuration; reviewers and members read."""
        return self.has_at_least(OrgRole.ADMIN)

    def can_review(self) -> bool:
        return self.has_at_least(OrgRole.REVIEWER)


def _invitation_key() -> str:
    return secrets.token_urlsafe(32)


def _invitation_expiry() -> datetime:
    return timezone.now() + timedelta(days=7)


class Invitation(TenantModel):
    organization = organization_key(related_name="invitations")
    created_by = None  # `invited_by` is who created it
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=OrgRole.choices, default=OrgRole.MEMBER)
    # Only a digest of the link key is stored; the key itself is in the email.
    key_digest = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    expires_at = models.DateTimeField(default=_invitation_expiry)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Invitation of {self.email} to {self.organization}"

    def is_usable(self) -> bool:
        return (
            self.accepted_at is None
            and self.revoked_at is None
            and self.expires_at > timezone.now()
        )
