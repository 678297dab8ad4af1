"""Approvals: an agent asks, people decide, the broker executes exactly once.

The broker's interface (the hot path calls these; nothing else in the broker
needs to know how approvals are stored):

1. When `evaluate()` answers `decision.approval_required` (allowed=False, the
   rule allows the call only after approval), build the call's bindings and
   pass them to the gate::

       binding = ApprovalBinding.for_action(ctx=ctx, action_name=action.name,
                                            connection_id=connection.pk,
                                            input_digest=input_digest(input))
       # or ApprovalBinding.for_proxy(ctx=ctx, method=method, path=clean_path,
       #        connection_id=connection.pk,
       #        input_digest=input_digest({"query": query, "body": body_text}))
       gate = approval_gate(binding=binding, decision=decision,
                            approval_id=body.get("approval") or "",
                            idempotency_key=request.headers.get("Idempotency-Key", ""),
                            connection_name=connection.name, input=input,
                            reason=body.get("reason") or "", request_id=meta.request_id)

   `input_digest` is apps.broker.results.input_digest, exactly what the audit
   trail stores as `input_sha256`; this module only compares the strings.

2. `gate.proceed` is True: the approval was claimed for this very call (row
   lock; marked `executed` in the same transaction, audited as
   `approval.executed`). Make the call now (validate, admit, attempt, credential,
   upstream, outcome) and put `gate.approval.public_id` into the call's audit
   metadata as `approval_id`. The approval is spent even if the upstream call
   fails: it executes at most once.

3. `gate.proceed` is False: answer `gate.status` with
   * 202 (`gate.code == "approval_pending"`): body `gate.body`, headers
     `gate.headers` (`Retry-After`, `Location` = status URL). The body:
     {"status": "pending_approval", "message": "...", "retry_after": 5,
      "approval": {"id", "status", "status_url", "summary", "expires_at",
                   "approvals_needed", "approvals_received"}}
     A new request is audited as `approval.requested`; repeating the call while
     it is pending (same token and call, or same Idempotency-Key) returns the
     same approval (idempotent) and records nothing new.
   * an error with the standard body: fail(gate.status, gate.code, gate.message,
     **gate.details). Codes (HTTP status):
       approval_not_found (404)   unknown id, or another organization's
       approval_binding_mismatch (403)  another worker's or token's approval
       approval_call_mismatch (403)     another action/method/path/connection
       approval_input_mismatch (403)    "input differs from what was approved"
       approval_denied (403)      a person said no
       approval_used (409)        already executed: it runs exactly once
       approval_void (409)        the role's rules changed since the request
       approval_expired (410)     not decided or not used in time
     Refusals about an existing approval are audited (`approval.claim_refused`,
     `approval.voided`, `approval.expired`) with `approval_id` in the metadata.

`approval_request`, `approval_claim_for_execution` (raises `ApprovalRefused`
with .status/.code/.message), `approval_decide`, `approvals_expire` and
`approval_settings_update` are the individual services behind the gate, the
dashboard, the management API and the periodic task. Every one writes its audit
events in its own transaction; events of one approval share
`metadata.approval_id` and target the approval (`target_type="approval"`).

A refusal that changes the approval (expired, void) must be committed before it
is reported, so those services commit first and raise after their transaction.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from apps.approvals.models import (
    OPEN_STATUSES,
    Approval,
    ApprovalDecision,
    ApprovalKind,
    ApprovalLink,
    ApprovalSettings,
    ApprovalStatus,
)
from apps.audit.models import ActorType, Outcome
from apps.audit.services import audit_record
from apps.organizations.models import Membership, Organization, OrgRole

RETRY_AFTER_SECONDS = 5
MAX_REASON_CHARS = 1000
MAX_COMMENT_CHARS = 2000
MAX_IDEMPOTENCY_KEY_CHARS = 200
LINK_SALT = "grantry.approvals.link"
INPUT_DIFFERS = "input differs from what was approved"


class ApprovalRefused(Exception):
    """A claim or decision that cannot go ahead; the message is for the caller."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        approval: Approval | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.approval = approval

    @property
    def details(self) -> dict[str, Any]:
        return {"approval_id": self.approval.public_id} if self.approval is not None else {}


# --- the call's bindings --------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalBinding:
    """Everything an approval is bound to, as the broker knows it for this request."""

    organization_id: int
    worker_id: int
    token_public_id: str
    role_id: int
    rules_version: int
    kind: str
    action_name: str = ""
    method: str = ""
    path: str = ""
    connection_id: int | None = None
    input_digest: str = ""

    @classmethod
    def _from_ctx(cls, ctx: Any, **call: Any) -> ApprovalBinding:
        version = getattr(ctx, "rules_version", None)
        if version is None:
            from apps.policies.models import Role

            version = Role.objects.filter(pk=ctx.role_id).values_list("rules_version", flat=True)
            version = version.first() or 0
        return cls(
            organization_id=ctx.organization.pk,
            worker_id=ctx.worker.pk,
            token_public_id=ctx.token_public_id,
            role_id=ctx.role_id,
            rules_version=int(version),
            **call,
        )

    @classmethod
    def for_action(
        cls, *, ctx: Any, action_name: str, connection_id: int | None, input_digest: str
    ) -> ApprovalBinding:
        return cls._from_ctx(
            ctx,
            kind=ApprovalKind.ACTION,
            action_name=action_name,
            connection_id=connection_id,
            input_digest=input_digest,
        )

    @classmethod
    def for_proxy(
        cls, *, ctx: Any, method: str, path: str, connection_id: int | None, input_digest: str
    ) -> ApprovalBinding:
        return cls._from_ctx(
            ctx,
            kind=ApprovalKind.PROXY,
            method=method.upper(),
            path=path,
            connection_id=connection_id,
            input_digest=input_digest,
        )

    def call_digest(self) -> str:
        parts = [
            self.organization_id,
            self.worker_id,
            self.token_public_id,
            self.role_id,
            self.rules_version,
            self.kind,
            self.action_name,
            self.method,
            self.path,
            self.connection_id,
            self.input_digest,
        ]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def what(self) -> str:
        return f"{self.method} {self.path}" if self.kind == ApprovalKind.PROXY else self.action_name


@dataclass(frozen=True)
class ApprovalGate:
    """What the broker does next (see the module docstring)."""

    approval: Approval | None
    proceed: bool
    status: int = 0
    code: str = ""
    message: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


# --- words --------------------------------------------------------------------------


def approver_words(approval: Approval | None = None, labels: list[str] | None = None) -> str:
    if labels:
        who = " or ".join(labels)
    else:
        who = "an admin or owner"
    if approval is not None and approval.approvals_needed > 1:
        return f"{approval.approvals_needed} different approvers ({who})"
    return who


def summarize(
    *, worker_name: str, binding: ApprovalBinding, connection_name: str, approvers: str
) -> str:
    conn = f"connection '{connection_name}'" if connection_name else "its connection"
    if binding.kind == ApprovalKind.PROXY:
        asked = f"send {binding.method} {binding.path} through {conn}"
    else:
        asked = f"run {binding.action_name} on {conn}"
    return (
        f"Worker '{worker_name}' asks to {asked} with input sha256 "
        f"{binding.input_digest[:12]}…; needs approval by {approvers}."
    )


def redact_input(value: Any) -> Any:
    """The input's shape without its values: keys stay, each value says only its type
    (and a string its length). For organizations that do not store broker input."""
    if isinstance(value, dict):
        return {str(k): redact_input(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_input(v) for v in value]
    if value is None:
        return None
    if isinstance(value, bool):
        return "‹redacted boolean›"
    if isinstance(value, int | float):
        return "‹redacted number›"
    if isinstance(value, str):
        return f"‹redacted text, {len(value)} characters›"
    return "‹redacted›"


def status_url(approval: Approval) -> str:
    path = reverse("approvals_agent:status", kwargs={"approval_id": approval.public_id})
    return f"{settings.GRANTRY_BASE_URL}{path}"


def dashboard_url(approval: Approval) -> str:
    path = reverse(
        "approvals:detail",
        kwargs={"org_slug": approval.organization.slug, "approval_id": approval.public_id},
    )
    return f"{settings.GRANTRY_BASE_URL}{path}"


def approvals_received(approval: Approval) -> int:
    return approval.decisions.filter(approve=True).count()


def agent_document(approval: Approval, *, now: datetime | None = None) -> dict[str, Any]:
    """What the agent sees of its approval (status endpoint and 202 body)."""
    status = approval.effective_status(now)
    last = approval.decisions.order_by("-id").first()
    return {
        "id": approval.public_id,
        "status": status,
        "status_url": status_url(approval),
        "summary": approval.summary,
        "kind": approval.kind,
        "action": approval.action_name or None,
        "method": approval.method or None,
        "path": approval.path or None,
        "connection": approval.connection_name,
        "input_sha256": approval.input_digest,
        "reason": approval.reason,
        "created_at": approval.created_at.isoformat(),
        "expires_at": approval.expires_at.isoformat(),
        "decided_at": approval.decided_at.isoformat() if approval.decided_at else None,
        "executed_at": approval.executed_at.isoformat() if approval.executed_at else None,
        "approvals_needed": approval.approvals_needed,
        "approvals_received": approvals_received(approval),
        "comment": last.comment if last is not None else "",
        "next": _next_step(approval, status),
    }


def _next_step(approval: Approval, status: str) -> str:
    if status == ApprovalStatus.PENDING:
        return (
            f"Waiting for {approver_words(approval)}. Poll this URL (?wait=30 waits up to "
            "30 s for a change); do not re-send the call until it is approved."
        )
    if status == ApprovalStatus.APPROVED:
        return (
            f'Approved. Re-send the same call with "approval": "{approval.public_id}" '
            "(or the same Idempotency-Key); it executes once."
        )
    if status == ApprovalStatus.EXECUTED:
        return "Executed. This approval is used up; a new call needs a new approval."
    if status == ApprovalStatus.DENIED:
        return "Denied. Do not retry this call unless a person asks you to."
    if status == ApprovalStatus.VOID:
        return "Void: the role's rules changed. Send the call again to ask anew."
    return "Expired. Send the call again to ask anew."


def pending_gate(approval: Approval) -> ApprovalGate:
    document = agent_document(approval)
    message = (
        f"This call needs a person's approval: {approval.summary} Poll "
        f"{document['status_url']} and, once it is approved, re-send the same call with "
        f'"approval": "{approval.public_id}".'
    )
    return ApprovalGate(
        approval=approval,
        proceed=False,
        status=202,
        code="approval_pending",
        message=message,
        body={
            "status": "pending_approval",
            "message": message,
            "retry_after": RETRY_AFTER_SECONDS,
            "approval": {
                k: document[k]
                for k in (
                    "id",
                    "status",
                    "status_url",
                    "summary",
                    "expires_at",
                    "approvals_needed",
                    "approvals_received",
                )
            },
        },
        headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Location": document["status_url"]},
    )


# --- audit ---------------------------------------------------------------------------


def _audit(
    approval: Approval,
    action: str,
    *,
    outcome: str = Outcome.SUCCESS,
    reason: str = "",
    metadata: dict[str, Any] | None = None,
    user: Any = None,
    request: HttpRequest | None = None,
    worker_actor: bool = False,
) -> None:
    actor: dict[str, Any] = {}
    if user is not None:
        actor = {"actor_type": ActorType.USER, "actor_id": user.pk, "actor_label": user.email}
    elif worker_actor:
        actor = {
            "actor_type": ActorType.WORKER,
            "actor_id": approval.worker_id,
            "actor_label": approval.worker.name,
        }
    audit_record(
        action=action,
        organization_id=approval.organization_id,
        target_type="approval",
        target_id=approval.public_id,
        target_label=approval.what()[:300],
        outcome=outcome,
        reason=reason[:2000],
        worker_id=approval.worker_id,
        token_id=approval.token_public_id,
        connection_id=approval.connection_id,
        request=request,
        metadata={
            "approval_id": approval.public_id,
            "status": approval.status,
            "input_sha256": approval.input_digest,
            **(metadata or {}),
        },
        **actor,
    )


def _set_status(approval: Approval, status: str, **fields: Any) -> None:
    approval.status = status
    for name, value in fields.items():
        setattr(approval, name, value)
    approval.save(update_fields=["status", *fields])


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
    input: Any = None,  # noqa: A002 - the agent API's word
    reason: str = "",
    idempotency_key: str = "",
    request_id: str = "",
) -> Approval:
    """Ask for approval of this exact call, or return the pending request it repeats.

    Raises ApprovalRefused(403, approval_input_mismatch) when the Idempotency-Key
    names a pending request for a different call."""
    from apps.workers.models import Worker

    if not getattr(decision, "approval_required", False):
        raise ValueError("approval_request needs a decision with approval_required")
    idempotency_key = (idempotency_key or "")[:MAX_IDEMPOTENCY_KEY_CHARS]
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
        call_digest=binding.call_digest(),
        idempotency_key=idempotency_key,
        reason=(reason or "")[:MAX_REASON_CHARS] if isinstance(reason, str) else "",
        approver_ids=list(getattr(decision, "approver_ids", ()) or ()),
        approvals_needed=needed,
        request_id=request_id[:64],
        expires_at=now + timedelta(seconds=int(decision.approval_expires_in or 3600)),
    )
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
    approval_id = approval.pk
    transaction.on_commit(lambda: _notify(approval_id, "approval.requested"))
    return approval


def _notify(approval_id: int, event: str) -> None:
    from apps.approvals import tasks

    if event == "approval.requested":
        tasks.notify_approvers.delay(approval_id)
    # Whether a webhook is configured is decided by the task (the URL is encrypted).
    if ApprovalSettings.objects.filter(organization__approvals__pk=approval_id).exists():
        tasks.deliver_webhook.delay(approval_id, event)


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


def approval_claim_for_execution(
    *, approval_id: str, binding: ApprovalBinding, idempotency_key: str = ""
) -> Approval:
    """Spend an approved approval on this exact call, exactly once.

    Under a row lock, re-checks every binding (organization, worker, token,
    action or method+path, connection, input digest, role and rules version,
    expiry) and marks the approval `executed` in the same transaction as its
    audit event. Two concurrent claims serialise on the lock: one wins, the
    other sees `executed` and gets approval_used (409). Raises ApprovalRefused
    after committing whatever the refusal changed (expired, void)."""
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
        if refusal is None:
            _set_status(approval, ApprovalStatus.EXECUTED, executed_at=now)
            _audit(approval, "approval.executed", worker_actor=True)
        elif refusal.status != 404:
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


def approval_gate(
    *,
    binding: ApprovalBinding,
    decision: Any,
    approval_id: Any = "",
    idempotency_key: str = "",
    connection_name: str = "",
    input: Any = None,  # noqa: A002
    reason: Any = "",
    request_id: str = "",
) -> ApprovalGate:
    """The broker's one call for a decision with approval_required (module docstring)."""
    if approval_id not in (None, "") and not isinstance(approval_id, str):
        return ApprovalGate(
            None, False, 400, "invalid_input", "'approval' must be an approval id string."
        )
    approval_id = approval_id or ""
    idempotency_key = (idempotency_key or "").strip()
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
        approval = approval_claim_for_execution(approval_id=existing.public_id, binding=binding)
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


# --- decisions ----------------------------------------------------------------------


def excluded_approver_ids(approval: Approval) -> set[int]:
    """Separation of duties: who created or owns the worker, or minted its token."""
    from apps.workers.models import WorkerToken

    worker = approval.worker
    ids = {worker.owner_id, worker.created_by_id}
    ids.add(
        WorkerToken.objects.filter(public_id=approval.token_public_id)
        .values_list("created_by_id", flat=True)
        .first()
    )
    return {i for i in ids if i is not None}


def may_decide(approval: Approval, membership: Membership | None) -> bool:
    """Named approvers when the rule names any, else admins and owners."""
    if membership is None or membership.organization_id != approval.organization_id:
        return False
    if approval.approver_ids:
        return membership.user_id in approval.approver_ids
    return membership.can_manage()


def eligible_approvers(approval: Approval) -> list[Any]:
    """Everyone who could approve this request (for notifications)."""
    members = Membership.objects.filter(organization_id=approval.organization_id).select_related(
        "user"
    )
    if approval.approver_ids:
        members = members.filter(user_id__in=approval.approver_ids)
    else:
        members = members.filter(role__in=[OrgRole.ADMIN, OrgRole.OWNER])
    excluded = excluded_approver_ids(approval)
    return [m.user for m in members if m.user_id not in excluded and m.user.is_active]


def _decision_refusal(
    approval: Approval, user: Any, approve: bool, now: datetime
) -> ApprovalRefused | None:
    from apps.policies.models import Role

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
    current = Role.objects.filter(pk=approval.role_id).values_list("rules_version", flat=True)
    if current.first() != approval.rules_version:
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
    user: Any,
    approve: bool,
    comment: str = "",
    request: HttpRequest | None = None,
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
        refusal = _decision_refusal(approval, user, approve, now)
        if refusal is None:
            ApprovalDecision.objects.create(
                approval=approval,
                user=user,
                user_label=user.email or user.get_username(),
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
                user=user,
                request=request,
                metadata={
                    "approve": approve,
                    "comment": comment,
                    "approvals_received": received,
                    "approvals_needed": approval.approvals_needed,
                },
            )
            if event != "approval.approval_recorded":
                approval_pk = approval.pk
                transaction.on_commit(lambda: _notify(approval_pk, event))
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


# --- settings ------------------------------------------------------------------------


def _check_webhook_url(url: str) -> str:
    from urllib.parse import urlsplit

    url = url.strip()
    parts = urlsplit(url)
    allowed = {"https"} | ({"http"} if settings.GRANTRY_EGRESS_ALLOW_LOOPBACK else set())
    if parts.scheme not in allowed or not parts.hostname or len(url) > 2000:
        raise ValidationError({"webhook_url": ["Enter an https:// URL."]})
    return url


@transaction.atomic
def approval_settings_update(
    *,
    organization: Organization,
    require_two_approvers: bool,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    remove_webhook: bool = False,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> ApprovalSettings:
    """None leaves the webhook URL or secret as it is (they are never shown back)."""
    row, _ = ApprovalSettings.objects.select_for_update().get_or_create(organization=organization)
    changes: dict[str, Any] = {}
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
            request=request,
            metadata=changes,
            **(
                {"actor_type": ActorType.USER, "actor_id": user.pk, "actor_label": user.email}
                if user is not None
                else {}
            ),
        )
    return row


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
    used = ApprovalLink.objects.filter(
        pk=data.get("l"),
        approval=approval,
        user=user,
        key_digest=_link_digest(data["k"]),
        used_at__isnull=True,
        expires_at__gt=now,
    ).update(used_at=now)
    return used == 1


# --- reads for pages ---------------------------------------------------------------------


def previous_approved(approval: Approval) -> Approval | None:
    """The last approved (or executed) request for the same action, or the same
    proxy method and path, in this organization: the baseline of the diff."""
    same = Approval.objects.for_organization(approval.organization).filter(
        kind=approval.kind,
        status__in=[ApprovalStatus.APPROVED, ApprovalStatus.EXECUTED],
    )
    if approval.kind == ApprovalKind.PROXY:
        same = same.filter(method=approval.method, path=approval.path)
    else:
        same = same.filter(action_name=approval.action_name)
    return same.exclude(pk=approval.pk).order_by("-decided_at", "-id").first()


@dataclass(frozen=True)
class DiffRow:
    path: str
    change: str  # "added", "removed", "changed", "same"
    before: str
    after: str


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key in sorted(value, key=str):
            out.update(_flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix or "(input)": value}


def input_diff(before: Any, after: Any) -> list[DiffRow]:
    """Field-by-field difference of two inputs (nested objects by dotted path)."""
    old, new = _flatten(before), _flatten(after)
    rows = []

    def show(v: Any) -> str:
        return json.dumps(v, ensure_ascii=False, sort_keys=True)

    for key in sorted(set(old) | set(new)):
        if key not in old:
            rows.append(DiffRow(key, "added", "", show(new[key])))
        elif key not in new:
            rows.append(DiffRow(key, "removed", show(old[key]), ""))
        elif old[key] != new[key]:
            rows.append(DiffRow(key, "changed", show(old[key]), show(new[key])))
        else:
            rows.append(DiffRow(key, "same", show(old[key]), show(new[key])))
    return rows
