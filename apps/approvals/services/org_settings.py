"""The organization's approval settings (two approvers, the webhook)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.approvals.models import (
    ApprovalSettings,
)
from apps.audit.models import ActorType
from apps.audit.services import audit_record
from apps.core.egress.guard import url_refusal
from apps.organizations.models import Organization
from apps.policies.approvers import approval_shortfalls
from apps.policies.models import Role

# --- settings ------------------------------------------------------------------------


def _check_webhook_url(url: str) -> str:
    """The egress guard's policy, checked when the URL is saved (and again per call)."""
    url = url.strip()
    refusal = "Use at most 2000 characters." if len(url) > 2000 else url_refusal(url)
    if refusal:
        raise ValidationError({"webhook_url": [refusal]})
    return url


def _check_two_approvers_possible(organization: Organization) -> None:
    """Refuse two approvers while a rule's requests could then never be approved."""
    problems: list[str] = []
    for role in Role.objects.for_organization(organization).prefetch_related("rules"):
        rules = [{"approval": rule.approval} for rule in role.rules.all()]
        for messages in approval_shortfalls(
            organization=organization, role=role, rules=rules, needed=2
        ).values():
            problems.extend(f"Role '{role.name}': {message}" for message in messages)
    if problems:
        raise ValidationError(
            {"require_two_approvers": ["Two approvers cannot be required yet.", *problems]}
        )


@transaction.atomic
def approval_settings_update(
    *,
    organization: Organization,
    require_two_approvers: bool,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    remove_webhook: bool = False,
    actor: Any = None,
) -> ApprovalSettings:
    """None leaves the webhook URL or secret as it is (they are never shown back)."""
    row, _ = ApprovalSettings.objects.select_for_update().get_or_create(organization=organization)
    changes: dict[str, Any] = {}
    if require_two_approvers and not row.require_two_approvers:
        _check_two_approvers_possible(organization)
    if row.require_two_approvers != require_two_approvers:
        changes["require_two_approvers"] = {
            "before": row.require_two_approvers,
            "after": require_two_approvers,
        }
        row.require_two_approvers = require_two_approvers
    if remove_webhook:
        if row.webhook_url:
            changes["webhook"] = "removed"
        row.webhook_url = ""
        row.webhook_secret = ""
    else:
        if webhook_url:
            row.webhook_url = _check_webhook_url(webhook_url)
            changes["webhook"] = "set"
        if webhook_secret:
            if len(webhook_secret) < 16:
                raise ValidationError({"webhook_secret": ["Use at least 16 characters."]})
            row.webhook_secret = webhook_secret
            changes["webhook_secret"] = "set"
    row.save()
    if changes:
        user = actor if getattr(actor, "is_authenticated", False) else None
        audit_record(
            action="approval.settings_changed",
            organization=organization,
            target_type="approval_settings",
            target_id=organization.pk,
            metadata=changes,
            **(
                {"actor_type": ActorType.USER, "actor_id": user.pk, "actor_label": user.email}
                if user is not None
                else {}
            ),
        )
    return row
