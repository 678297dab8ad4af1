"""Signed, single-use, expiring email links that lead to an approval's page."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from apps.approvals.models import (
    Approval,
    ApprovalLink,
)
from apps.approvals.services.base import (
    LINK_SALT,
)

# --- email links ----------------------------------------------------------------------


def _link_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def approval_links_create(*, approval: Approval, users: list[Any]) -> list[tuple[Any, str]]:
    """One signed, single-use link per approver, expiring with the approval."""
    links = []
    for user in users:
        key = secrets.token_urlsafe(24)
        link = ApprovalLink.objects.create(
            approval=approval,
            user=user,
            key_digest=_link_digest(key),
            expires_at=approval.expires_at,
        )
        token = signing.dumps({"l": link.pk, "k": key}, salt=LINK_SALT, compress=True)
        path = reverse(
            "approvals:link",
            kwargs={
                "org_slug": approval.organization.slug,
                "approval_id": approval.public_id,
                "token": token,
            },
        )
        links.append((user, f"{settings.GRANTRY_BASE_URL}{path}"))
    return links


@transaction.atomic
def approval_link_open(*, approval: Approval, user: Any, token: str) -> bool:
    """Spend an email link: True when it is this user's, unused, unexpired and
    signed by us. It only leads to the approval's page; it never decides."""
    now = timezone.now()
    max_age = max(int((approval.expires_at - approval.created_at).total_seconds()), 60)
    try:
        data = signing.loads(token, salt=LINK_SALT, max_age=max_age)
    except signing.BadSignature:
        return False
    if not isinstance(data, dict) or not isinstance(data.get("k"), str):
        return False
    link_id = data.get("l")
    if not isinstance(link_id, int):
        return False
    used = ApprovalLink.objects.filter(
        pk=link_id,
        approval=approval,
        user=user,
        key_digest=_link_digest(data["k"]),
        used_at__isnull=True,
        expires_at__gt=now,
    ).update(used_at=now)
    return used == 1
