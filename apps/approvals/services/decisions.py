"""The approvers' side: who may decide, decisions, expiry."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.approvals.models import (
    Approval,
    ApprovalDecision,
    ApprovalStatus,
)
from apps.approvals.services.base import (
    MAX_COMMENT_CHARS,
    ApprovalRefused,
    _audit,
    _set_status,
    approvals_received,
)
from apps.approvals.services.events import notify_event
from apps.audit.models import Outcome
from apps.organizations.models import Membership
from apps.policies.approvers import approver_candidates
from apps.policies.models import Role
from apps.workers.models import WorkerToken

# --- decisions ----------------------------------------------------------------------


def excluded_approver_ids(approval: Approval) -> set[int]:
    """Separation of duties: who created or owns the worker, or minted its token."""
    token = (
        WorkerToken.objects.filter(public_id=approval.token_public_id)
        .select_related("worker")
        .first()
    )
    if token is None:
        return approval.worker.separation_of_duties_ids()
    return token.separation_of_duties_ids()


def may_decide(approval: Approval, membership: Membership | None) -> bool:
    """Named approvers when the rule names any, else admins and owners."""
    if membership is None or membership.organization_id != approval.organization_id:
        return False
    if approval.approver_ids:
        return membership.user_id in approval.approver_ids
    return membership.can_manage()


def input_for(approval: Approval, membership: Membership | None) -> tuple[Any, bool]:
    """The input a member may see, and whether it is exact: the call's real input for
    an eligible approver while the request is pending, whatever the organization
    stores; else the record's (exact only when the organization stores input)."""
    eligible = (
        may_decide(approval, membership)
        and membership is not None
        and membership.user_id not in excluded_approver_ids(approval)
    )
    pending = approval.effective_status() == ApprovalStatus.PENDING
    if eligible and approval.sealed_input and pending:
        return json.loads(approval.sealed_input), True
    return approval.input, approval.input_stored


def eligible_approvers(approval: Approval) -> list[Any]:
    """Everyone who could approve this request: the rule's named approvers, else admins
    and owners (apps.policies.approvers, the rule a saved rule is checked against),
    less separation of duties."""
    excluded = excluded_approver_ids(approval)
    candidates = approver_candidates(
        organization_id=approval.organization_id, approver_ids=approval.approver_ids
    )
    return [user for user in candidates if user.pk not in excluded]


def approver_shortfall(approval: Approval) -> str | None:
    """Why this request could never be approved (None: enough people could)."""
    eligible = eligible_approvers(approval)
    if len(eligible) >= approval.approvals_needed:
        return None
    who = "approvers the rule names" if approval.approver_ids else "admins and owners"
    return (
        f"No one can approve this call: it needs {approval.approvals_needed} approver"
        f"{'s' if approval.approvals_needed > 1 else ''}, and of the {who}, "
        f"{len(eligible)} may decide (whoever created or owns this worker, or minted its "
        "token, may not approve its requests). Ask an admin to change the rule's "
        "approvers; do not wait for this approval."
    )


def _decision_refusal(
    approval: Approval, user: Any, approve: bool, now: datetime
) -> ApprovalRefused | None:
    membership = Membership.objects.filter(
        organization_id=approval.organization_id, user=user
    ).first()
    if membership is None:
        return ApprovalRefused(404, "approval_not_found", "No such approval.")
    if not may_decide(approval, membership):
        who = "the approvers this rule names" if approval.approver_ids else "admins and owners"
        return ApprovalRefused(
            403, "not_an_approver", f"Only {who} can decide this request.", approval=approval
        )
    if approve and user.pk in excluded_approver_ids(approval):
        return ApprovalRefused(
            403,
            "separation_of_duties",
            "You created or own this worker, or minted its token, so you cannot approve its "
            "requests. Another approver must decide.",
            approval=approval,
        )
    status = approval.effective_status(now)
    if status == ApprovalStatus.EXPIRED:
        if approval.status != ApprovalStatus.EXPIRED:
            _set_status(approval, ApprovalStatus.EXPIRED)
            _audit(approval, "approval.expired", reason="Expired before it was decided.")
        return ApprovalRefused(410, "approval_expired", "This request expired.", approval=approval)
    if status != ApprovalStatus.PENDING:
        return ApprovalRefused(
            409,
            "already_decided",
            f"This request is already {approval.get_status_display().lower()}.",
            approval=approval,
        )
    current = None
    if approval.role_id is not None:
        versions = Role.objects.filter(pk=approval.role_id).values_list("rules_version", flat=True)
        current = versions.first()
    if current != approval.rules_version:
        _set_status(approval, ApprovalStatus.VOID)
        _audit(
            approval,
            "approval.voided",
            outcome=Outcome.FAILURE,
            reason="The role's rules changed after the request.",
        )
        return ApprovalRefused(
            409,
            "approval_void",
            "The role's rules changed since this request was made, so it is void.",
            approval=approval,
        )
    if approval.decisions.filter(user=user).exists():
        return ApprovalRefused(
            409,
            "already_decided",
            "You already approved this request; it needs another approver.",
            approval=approval,
        )
    return None


def approval_decide(
    *,
    approval: Approval,
    actor: Any,
    approve: bool,
    comment: str = "",
) -> Approval:
    """Approve or deny, with a comment. Raises ApprovalRefused (404 not a member,
    403 not an approver or separation of duties, 409 already decided or void,
    410 expired) after committing any status change the refusal made."""
    comment = (comment or "").strip()[:MAX_COMMENT_CHARS]
    refusal: ApprovalRefused | None = None
    event = ""
    with transaction.atomic():
        approval = (
            Approval.objects.select_for_update()
            .select_related("worker", "organization")
            .get(pk=approval.pk)
        )
        now = timezone.now()
        refusal = _decision_refusal(approval, actor, approve, now)
        if refusal is None:
            ApprovalDecision.objects.create(
                approval=approval,
                user=actor,
                user_label=actor.email or actor.get_username(),
                approve=approve,
                comment=comment,
            )
            received = approvals_received(approval)
            if not approve:
                _set_status(approval, ApprovalStatus.DENIED, decided_at=now)
                event = "approval.denied"
            elif received >= approval.approvals_needed:
                _set_status(approval, ApprovalStatus.APPROVED, decided_at=now)
                event = "approval.approved"
            else:
                event = "approval.approval_recorded"
            _audit(
                approval,
                event,
                outcome=Outcome.SUCCESS,
                reason=comment,
                user=actor,
                metadata={
                    "approve": approve,
                    "comment": comment,
                    "approvals_received": received,
                    "approvals_needed": approval.approvals_needed,
                },
            )
            if event != "approval.approval_recorded":
                notify_event(approval, event)
    if refusal is not None:
        raise refusal
    return approval


# --- expiry --------------------------------------------------------------------------


@transaction.atomic
def approvals_expire(*, now: datetime | None = None, limit: int = 500) -> int:
    """Mark open approvals past their expiry as expired, each audited. Safe to run
    twice and alongside a claim (skip_locked: a row being claimed is left for the
    claim, which checks the expiry itself)."""
    now = now or timezone.now()
    due = list(
        Approval.objects.past_expiry(now)
        .select_for_update(skip_locked=True, of=("self",))
        .select_related("worker")
        .order_by("expires_at")[:limit]
    )
    for approval in due:
        was = approval.status
        _set_status(approval, ApprovalStatus.EXPIRED)
        _audit(
            approval,
            "approval.expired",
            reason="Expired before it was decided."
            if was == ApprovalStatus.PENDING
            else "Approved but not used before it expired.",
        )
    return len(due)
