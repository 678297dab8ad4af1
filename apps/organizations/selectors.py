"""Reads about organizations that are more than one line."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.organizations.models import Invitation, Membership


def invitations_for_user(user: Any) -> QuerySet[Invitation]:
    """Invitations that can still be accepted, sent to one of the user's verified
    addresses: shown to them even when they did not come through the link."""
    from allauth.account.models import EmailAddress

    emails = list(
        EmailAddress.objects.filter(user=user, verified=True).values_list("email", flat=True)
    )
    if not emails:
        return Invitation.objects.none()
    matches = Q()
    for email in emails:
        matches |= Q(email__iexact=email)
    return (
        Invitation.objects.filter(matches)
        .filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())
        .exclude(organization__memberships__user=user)
        .select_related("organization", "invited_by")
        .order_by("-created_at")
    )


def memberships_of(user: Any) -> QuerySet[Membership]:
    """A signed-in person's memberships, with their organizations (none for anyone else)."""
    return Membership.objects.select_related("organization").filter(user_id=user.pk or 0)
