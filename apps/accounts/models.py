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

from apps.core.models import IssuedToken, IssuedTokenQuerySet, organization_key


class PersonalAPITokenQuerySet(IssuedTokenQuerySet["PersonalAPIToken"]):
    def for_user(self, user: Any) -> PersonalAPITokenQuerySet:
        return self.filter(user=user)


class PersonalAPIToken(IssuedToken):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="personal_tokens"
    )
    organization = organization_key(related_name="personal_tokens")
    created_by = None  # the token's `user` minted it
    name = models.CharField(max_length=100, help_text="What this token is for.")
    # public_id, digest, last4, expires_at, revoked_at, last_used_at: IssuedToken's.

    objects = PersonalAPITokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id}, …{self.last4})"

    def __repr__(self) -> str:
        return f"<PersonalAPIToken {self.public_id} user={self.user_id} org={self.organization_id}>"

    def is_usable(self, now: datetime | None = None) -> bool:
        return not self.is_revoked() and not self.is_expired(now)

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "active"
