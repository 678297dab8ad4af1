"""People: personal API tokens a member mints for automation of the management API.

A personal token (`gryp_…`) is bound to one user AND one organization and acts
with the user's *current* org role there: remove the membership and the token
is useless. Only its SHA-256 digest is stored (apps.core.tokens).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.core.models import TenantModel, TenantQuerySet, organization_key


class PersonalAPITokenQuerySet(TenantQuerySet["PersonalAPIToken"]):
    def for_user(self, user: Any) -> PersonalAPITokenQuerySet:
        return self.filter(user=user)

    def usable(self, *, now: datetime | None = None) -> PersonalAPITokenQuerySet:
        return self.filter(revoked_at__isnull=True, expires_at__gt=now or timezone.now())


class PersonalAPIToken(TenantModel):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="personal_tokens"
    )
    organization = organization_key(related_name="personal_tokens")
    created_by = None  # the token's `user` minted it
    name = models.CharField(max_length=100, help_text="What this token is for.")
    public_id = models.CharField(max_length=32, unique=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    last4 = models.CharField(max_length=4, editable=False)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = PersonalAPITokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id}, …{self.last4})"

    def __repr__(self) -> str:
        return f"<PersonalAPIToken {self.public_id} user={self.user_id} org={self.organization_id}>"

    def is_usable(self, now: datetime | None = None) -> bool:
        return self.revoked_at is None and self.expires_at > (now or timezone.now())

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "active"
