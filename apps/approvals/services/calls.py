"""The broker's side: request an approval, claim it for execution, the gate."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apps.approvals.models import (
    OPEN_STATUSES,
    Approval,
    ApprovalSettings,
    ApprovalStatus,
)
from apps.approvals.services.base import (
    INPUT_DIFFERS,
    MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_REASON_CHARS,
    ApprovalBinding,
    ApprovalGate,
    ApprovalRefused,
    _audit,
    _set_status,
    approver_words,
    input_fingerprints,
    pending_gate,
    redact_input,
    summarize,
)
from apps.approvals.services.decisions import approver_shortfall
from apps.approvals.services.events import notify_event
from apps.audit.models import Outcome
from apps.organizations.models import Organization
from apps.workers.models import Worker

# --- requests --------------------------------------------------------------------------


def _organization_settings(organization_id: int) -> ApprovalSettings | None:
    return ApprovalSettings.objects.filter(organization_id=organization_id).first()


def _open_match(binding: ApprovalBinding, idempotency_key: str) -> Approval | None:
    """The pending approval this request repeats: same token and call, or same key."""
    match = Q(call_digest=binding.call_digest())
    if idempotency_key:
        match |= Q(idempotency_key=idempotency_key)
    return (
        Approval.objects.select_for_update()
        .select_related("worker", "organization")
        .filter(match, token_public_id=binding.token_public_id, status=ApprovalStatus.PENDING)
        .order_by("-id")
        .first()
    )


@transaction.atomic
def approval_request(
    *,
    binding: ApprovalBinding,
    decision: Any,
    connection_name: str = "",
    input: Any = None,  # the agent API's word
    reason: str = "",
    idempotency_key: str = "",
    request_id: str = "",
) -> Approval:
    """Ask for approval of this exact call, or return the pending request it repeats.

    Raises ApprovalRefused(403, approval_input_mismatch) when the Idempotency-Key
    names a pending request for a different call, and (403, no_eligible_approver)
    when too few people could ever approve it (separation of duties included)."""

    if not getattr(decision, "approval_required", False):
        raise ValueError("approval_request needs a decision with approval_required")
    # PostgreSQL text refuses NUL: drop it from the agent's free text.
    idempotency_key = (idempotency_key or "").replace("\x00", "")[:MAX_IDEMPOTENCY_KEY_CHARS]
    now = timezone.now()
    existing = _open_match(binding, idempotency_key)
    if existing is not None and existing.expires_at <= now:
        _set_status(existing, ApprovalStatus.EXPIRED)
        _audit(existing, "approval.expired", reason="Expired before it was decided.")
        existing = None
    if existing is not None:
        if existing.call_digest == binding.call_digest():
            return existing
        if _same_call(existing, binding):
            raise ApprovalRefused(
                403,
                "approval_input_mismatch",
                f"{INPUT_DIFFERS.capitalize()}: this Idempotency-Key belongs to the pending "
                f"approval {existing.public_id} for other input.",
                approval=existing,
            )
        raise ApprovalRefused(
            403,
            "approval_call_mismatch",
            f"This Idempotency-Key belongs to the pending approval {existing.public_id} "
            f"for {existing.what()}.",
            approval=existing,
        )

    organization = Organization.objects.get(pk=binding.organization_id)
    worker = Worker.objects.get(pk=binding.worker_id, organization=organization)
    org_settings = _organization_settings(organization.pk)
    needed = 2 if org_settings is not None and org_settings.require_two_approvers else 1
    labels = list(getattr(decision, "approver_labels", ()) or ())
    approval = Approval(
        organization=organization,
        worker=worker,
        token_public_id=binding.token_public_id,
        role_id=binding.role_id,
        rules_version=binding.rules_version,
        rule_id=decision.rule_id,
        rule_words=decision.reason[:2000],
        kind=binding.kind,
        action_name=binding.action_name,
        method=binding.method,
        path=binding.path[:500],
        connection_id=binding.connection_id,
        connection_name=connection_name[:120],
        input_digest=binding.input_digest,
        input=input if organization.store_broker_input else redact_input(input),
        input_stored=organization.store_broker_input,
        sealed_input=json.dumps(input, ensure_ascii=False),
        input_fingerprints=input_fingerprints(organization.pk, input),
        call_digest=binding.call_digest(),
        idempotency_key=idempotency_key,
        reason=(reason or "").replace("\x00", "")[:MAX_REASON_CHARS]
        if isinstance(reason, str)
        else "",
        approver_ids=list(getattr(decision, "approver_ids", ()) or ()),
        approvals_needed=needed,
        request_id=request_id[:64],
        expires_at=now + timedelta(seconds=int(decision.approval_expires_in or 3600)),
    )
    shortfall = approver_shortfall(approval)
    if shortfall is not None:
        # Told at once: an agent must not wait for an approval nobody can give.
        raise ApprovalRefused(403, "no_eligible_approver", shortfall)
    approval.summary = summarize(
        worker_name=worker.name,
        binding=binding,
        connection_name=connection_name,
        approvers=approver_words(approval, labels),
    )
    try:
        with transaction.atomic():
            approval.save()
    except IntegrityError:
        # A concurrent identical request won the race: answer with its approval.
        raced = _open_match(binding, idempotency_key)
        if raced is None:
            raise
        return raced
    _audit(
        approval,
        "approval.requested",
        reason=approval.summary,
        worker_actor=True,
        metadata={
            "rule_id": approval.rule_id,
            "agent_reason": approval.reason,
            "expires_at": approval.expires_at.isoformat(),
            "approvals_needed": needed,
            "idempotency_key": bool(idempotency_key),
        },
    )
    notify_event(approval, "approval.requested")
    return approval


def _same_call(approval: Approval, binding: ApprovalBinding) -> bool:
    """Same action (or method and path) and connection, input aside."""
    return (
        approval.kind == binding.kind
        and approval.action_name == binding.action_name
        and approval.method == binding.method
        and approval.path == binding.path
        and approval.connection_id == binding.connection_id
    )


# --- claims ---------------------------------------------------------------------------


def _find(binding: ApprovalBinding, approval_id: str, idempotency_key: str) -> Approval | None:
    """The approval a re-sent call refers to, within the caller's organization only."""
    mine = Approval.objects.filter(organization_id=binding.organization_id)
    if approval_id:
        if not isinstance(approval_id, str) or len(approval_id) > 32:
            return None
        return mine.filter(public_id=approval_id).first()
    if idempotency_key:
        return (
            mine.filter(
                token_public_id=binding.token_public_id,
                idempotency_key=idempotency_key[:MAX_IDEMPOTENCY_KEY_CHARS],
            )
            .order_by("-id")
            .first()
        )
    return None


def _claim_refusal(
    approval: Approval, binding: ApprovalBinding, now: datetime
) -> ApprovalRefused | None:
    """Why this approval cannot run this call now (None: it can). Checks every
    binding; may change the approval's status (expired, void), never to executed."""
    return _binding_refusal(approval, binding) or _state_refusal(approval, binding, now)


def _binding_refusal(approval: Approval, binding: ApprovalBinding) -> ApprovalRefused | None:
    """Why this approval is not for this call: another organization, worker, token, action
    or input (None: it is this call's)."""
    if approval.organization_id != binding.organization_id:
        return ApprovalRefused(404, "approval_not_found", "No such approval.")
    if (
        approval.worker_id != binding.worker_id
        or approval.token_public_id != binding.token_public_id
    ):
        return ApprovalRefused(
            403,
            "approval_binding_mismatch",
            "This approval was given to another worker or token; it cannot be used with this one.",
            approval=approval,
        )
    if not _same_call(approval, binding):
        return ApprovalRefused(
            403,
            "approval_call_mismatch",
            f"This approval is for {approval.what()} on connection "
            f"'{approval.connection_name}', not for {binding.what()}.",
            approval=approval,
        )
    if approval.input_digest != binding.input_digest:
        return ApprovalRefused(
            403,
            "approval_input_mismatch",
            f"{INPUT_DIFFERS.capitalize()}: the approved input has sha256 "
            f"{approval.input_digest[:12]}…, this call's {binding.input_digest[:12]}…. "
            "Send the approved input, or make a new request.",
            approval=approval,
        )
    return None


def _state_refusal(
    approval: Approval, binding: ApprovalBinding, now: datetime
) -> ApprovalRefused | None:
    """Why this call's approval cannot run now: used, denied, void (the role's rules
    changed), expired or still pending (None: approved). Marks it void or expired, audited,
    when it has just become so."""
    if approval.status == ApprovalStatus.EXECUTED:
        return ApprovalRefused(
            409,
            "approval_used",
            f"Approval {approval.public_id} was already used; an approved call executes "
            "exactly once. A new call needs a new approval.",
            approval=approval,
        )
    if approval.status == ApprovalStatus.DENIED:
        return ApprovalRefused(
            403, "approval_denied", "A person denied this call.", approval=approval
        )
    if approval.status == ApprovalStatus.VOID or (
        approval.status in OPEN_STATUSES
        and (approval.role_id != binding.role_id or approval.rules_version != binding.rules_version)
    ):
        if approval.status != ApprovalStatus.VOID:
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
            "The role's rules changed since this approval was requested, so it is void. "
            "Send the call again to ask for a new approval.",
            approval=approval,
        )
    if approval.effective_status(now) == ApprovalStatus.EXPIRED:
        if approval.status != ApprovalStatus.EXPIRED:
            _set_status(approval, ApprovalStatus.EXPIRED)
            _audit(approval, "approval.expired", reason="Expired before it was used.")
        return ApprovalRefused(
            410,
            "approval_expired",
            "This approval expired. Send the call again to ask for a new approval.",
            approval=approval,
        )
    if approval.status == ApprovalStatus.PENDING:
        return ApprovalRefused(
            409,
            "approval_pending",
            f"Approval {approval.public_id} is still waiting for {approver_words(approval)}.",
            approval=approval,
        )
    return None


def _locked_claim(
    *, approval_id: str, binding: ApprovalBinding, idempotency_key: str, spend: bool
) -> Approval:
    """Under the approval's row lock, re-check every binding; with `spend`, also mark it
    executed (audited) in the caller's transaction. Raises ApprovalRefused after
    committing whatever the refusal changed (expired, void) and its audit event."""
    found = _find(binding, approval_id, idempotency_key)
    if found is None:
        raise ApprovalRefused(404, "approval_not_found", "No such approval.")
    refusal: ApprovalRefused | None = None
    with transaction.atomic():
        approval = (
            Approval.objects.select_for_update()
            .select_related("worker", "organization")
            .get(pk=found.pk)
        )
        now = timezone.now()
        refusal = _claim_refusal(approval, binding, now)
        if refusal is None and spend:
            _set_status(approval, ApprovalStatus.EXECUTED, executed_at=now)
            _audit(approval, "approval.executed", worker_actor=True)
        elif refusal is not None and refusal.status != 404:
            _audit(
                approval,
                "approval.claim_refused",
                outcome=Outcome.DENIED,
                reason=refusal.message,
                worker_actor=True,
                metadata={"code": refusal.code, "call_input_sha256": binding.input_digest},
            )
    if refusal is not None:
        raise refusal
    return approval


def approval_check_for_execution(
    *, approval_id: str, binding: ApprovalBinding, idempotency_key: str = ""
) -> Approval:
    """Whether this approval may run this exact call now, without spending it: every
    binding, the status and the expiry are checked as `approval_claim_for_execution`
    checks them. The broker checks first, admits the call (rate limit, quota,
    connection), then claims in the transaction of its attempt, so a call refused in
    between leaves the approval usable."""
    return _locked_claim(
        approval_id=approval_id, binding=binding, idempotency_key=idempotency_key, spend=False
    )


def approval_claim_for_execution(
    *, approval_id: str, binding: ApprovalBinding, idempotency_key: str = ""
) -> Approval:
    """Spend an approved approval on this exact call, exactly once.

    Under a row lock, re-checks every binding (organization, worker, token,
    action or method+path, connection, input digest, role and rules version,
    expiry) and marks the approval `executed` with its audit event, in the
    caller's transaction when there is one: the broker calls it in the same
    transaction as the call's attempt record, so an approval is spent only by a
    call that goes upstream. Two concurrent claims serialise on the lock: one
    wins, the other sees `executed` and gets approval_used (409). Raises
    ApprovalRefused after committing whatever the refusal changed (expired, void)."""
    return _locked_claim(
        approval_id=approval_id, binding=binding, idempotency_key=idempotency_key, spend=True
    )


def approval_gate(
    *,
    binding: ApprovalBinding,
    decision: Any,
    approval_id: Any = "",
    idempotency_key: str = "",
    connection_name: str = "",
    input: Any = None,
    reason: Any = "",
    request_id: str = "",
) -> ApprovalGate:
    """The broker's one call for a decision with approval_required (module docstring)."""
    if approval_id not in (None, "") and not isinstance(approval_id, str):
        return ApprovalGate(
            None, False, 400, "invalid_input", "'approval' must be an approval id string."
        )
    approval_id = approval_id or ""
    idempotency_key = (idempotency_key or "").replace("\x00", "").strip()
    try:
        existing = _find(binding, approval_id, idempotency_key)
        if existing is None:
            if approval_id:
                raise ApprovalRefused(404, "approval_not_found", "No such approval.")
            approval = approval_request(
                binding=binding,
                decision=decision,
                connection_name=connection_name,
                input=input,
                reason=reason if isinstance(reason, str) else "",
                idempotency_key=idempotency_key,
                request_id=request_id,
            )
            return pending_gate(approval)
        if (
            existing.effective_status() == ApprovalStatus.PENDING
            and existing.call_digest == binding.call_digest()
        ):
            return pending_gate(existing)  # asked again while waiting: same request
        # Anything else is a claim; its checks say exactly what (if anything) differs.
        # Only checked here: the broker spends it with the call's attempt.
        approval = approval_check_for_execution(approval_id=existing.public_id, binding=binding)
    except ApprovalRefused as refused:
        return ApprovalGate(
            refused.approval,
            False,
            refused.status,
            refused.code,
            refused.message,
            details=refused.details,
        )
    return ApprovalGate(approval=approval, proceed=True, status=200, code="approved")
