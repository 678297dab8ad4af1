"""Writes for personal API tokens (automation of the management API).

Kept apart from the accounts engineer's sign-up services. The raw token leaves
`personal_token_mint()` once and is never stored, logged or audited."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.dispatch import receiver

from apps.accounts.models import PersonalAPIToken
from apps.audit.models import Outcome
from apps.audit.services import audit_record
from apps.core.tokens import (
    DEFAULT_TOKEN_DAYS,
    issued_token_create,
    issued_token_revoke,
    last_used_touch,
    leak_notify,
    leak_report,
    token_lifetime,
)
from apps.organizations.models import Membership, Organization
from apps.organizations.signals import membership_removed


def _target(token: PersonalAPIToken) -> dict[str, Any]:
    return {
        "target_type": "personalapitoken",
        "target_id": token.public_id,
        "target_label": f"{token.name} ({token.public_id})",
        "token_id": token.public_id,
    }


@transaction.atomic
def personal_token_mint(
    *,
    user: Any,
    organization: Organization,
    name: str,
    expires_in_days: int = DEFAULT_TOKEN_DAYS,
) -> tuple[PersonalAPIToken, str]:
    """A `gryp_` token acting as `user` in `organization` (with their current org role)."""
    if not Membership.objects.filter(organization=organization, user=user).exists():
        raise ValidationError({"organization": "You are not a member of this organization."})
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Name the token after what it is for."})
    expires_at = token_lifetime(organization, expires_in_days)
    token, raw = issued_token_create(
        PersonalAPIToken,
        kind="personal",
        user=user,
        organization=organization,
        name=name[:100],
        expires_at=expires_at,
    )
    audit_record(
        action="personal_token.minted",
        organization=organization,
        metadata={"expires_at": token.expires_at.isoformat(), "last4": token.last4},
        **_target(token),
        actor=user,
    )
    return token, raw


@transaction.atomic
def personal_token_revoke(*, token: PersonalAPIToken, actor: Any) -> PersonalAPIToken:
    token, revoked = issued_token_revoke(PersonalAPIToken, pk=token.pk)
    if not revoked:
        return token
    audit_record(
        action="personal_token.revoked",
        organization_id=token.organization_id,
        **_target(token),
        actor=actor,
    )
    return token


@receiver(membership_removed)
def personal_tokens_of_removed_member_revoke(
    *, membership: Membership, actor: Any, **_: Any
) -> None:
    """A removed member's personal tokens for that organization (apps.organizations
    sends `membership_removed` inside membership_remove's transaction)."""
    tokens = PersonalAPIToken.objects.filter(
        user=membership.user, organization=membership.organization, revoked_at__isnull=True
    )
    for token in tokens:
        personal_token_revoke(token=token, actor=actor)


@transaction.atomic
def personal_token_leaked(
    *, token: PersonalAPIToken, where: str, method: str = "", path: str = ""
) -> PersonalAPIToken:
    """A valid personal token was seen where it must never be (`where`, e.g. a URL's query
    string, which access logs and browser history keep): revoke it, audit `token.leaked`
    and email its user after commit. Never given the raw token."""
    token = personal_token_revoke(token=token, actor=None)
    audit_record(
        action="token.leaked",
        organization_id=token.organization_id,
        outcome=Outcome.FAILURE,
        **leak_report(kind="personal", where=where, method=method, path=path),
        **_target(token),
    )
    leak_notify(
        recipients=[token.user.email],
        subject="[Grantry] A personal API token leaked and was revoked",
        label=f"personal API token {token.name} ({token.public_id}, …{token.last4})",
        where=where,
        method=method,
        path=path,
        remedy=f"Mint a new one at {settings.GRANTRY_BASE_URL}/accounts/tokens/",
    )
    return token


def personal_token_touch(*, token: PersonalAPIToken, now: datetime | None = None) -> bool:
    """Last use, written at most once a minute per token (apps.core.tokens.last_used_touch)."""
    return last_used_touch(PersonalAPIToken, pk=token.pk, last_used_at=token.last_used_at, now=now)
