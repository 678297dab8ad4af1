"""Writes for personal API tokens (automation of the management API).

Kept apart from the accounts engineer's sign-up services. The raw token leaves
`personal_token_mint()` once and is never stored, logged or audited."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from apps.accounts.models import PersonalAPIToken
from apps.audit.models import Outcome
from apps.audit.services import audit_record
from apps.core.tokens import (
    DEFAULT_TOKEN_DAYS,
    generate_token,
    last_used_touch,
    leaked_token_email,
    max_token_days,
    new_public_id,
    request_line,
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
    ceiling = max_token_days(organization)
    if not 1 <= expires_in_days <= ceiling:
        raise ValidationError({"expires_in_days": f"Choose between 1 and {ceiling} days."})
    generated = generate_token("personal")
    token = PersonalAPIToken.objects.create(
        user=user,
        organization=organization,
        name=name[:100],
        public_id=new_public_id(),
        digest=generated.digest,
        last4=generated.last4,
        expires_at=timezone.now() + timedelta(days=expires_in_days),
    )
    audit_record(
        action="personal_token.minted",
        organization=organization,
        metadata={"expires_at": token.expires_at.isoformat(), "last4": token.last4},
        **_target(token),
        actor=user,
    )
    return token, generated.raw


@transaction.atomic
def personal_token_revoke(*, token: PersonalAPIToken, actor: Any) -> PersonalAPIToken:
    token = PersonalAPIToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        return token
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
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
        reason=f"The token was sent in {where}; it has been revoked.",
        metadata={"where": where, "kind": "personal", **request_line(method, path)},
        **_target(token),
    )
    user = token.user
    if user.email:
        body = leaked_token_email(
            label=f"personal API token {token.name} ({token.public_id}, …{token.last4})",
            where=where,
            method=method,
            path=path,
            remedy=f"Mint a new one at {settings.GRANTRY_BASE_URL}/accounts/tokens/",
        )
        transaction.on_commit(
            partial(
                send_mail,
                "[Grantry] A personal API token leaked and was revoked",
                body,
                None,
                [user.email],
            )
        )
    return token


def personal_token_touch(*, token: PersonalAPIToken, now: datetime | None = None) -> bool:
    """Last use, written at most once a minute per token (apps.core.tokens.last_used_touch)."""
    return last_used_touch(PersonalAPIToken, pk=token.pk, last_used_at=token.last_used_at, now=now)
