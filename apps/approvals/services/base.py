"""What every approvals service shares: bindings, refusals, words, audit."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils.crypto import salted_hmac

from apps.approvals.models import (
    Approval,
    ApprovalKind,
    ApprovalStatus,
)
from apps.approvals.selectors import flatten_input
from apps.audit.models import ActorType, Outcome
from apps.audit.services import audit_record
from apps.policies.models import Role

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
            version = Role.objects.filter(pk=ctx.role_id).values_list("rules_version", flat=True)
            version = version.first() or 0
        return cls(
            organization_id=ctx.organization_id,
            worker_id=ctx.worker_id,
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
    who = " or ".join(labels) if labels else "an admin or owner"
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


def input_fingerprints(organization_id: int, value: Any) -> dict[str, str]:
    """A keyed hash (HMAC-SHA256 under the encryption key, per organization) of each
    leaf of the input by path: enough to tell an approver whether a value is the same
    as in an earlier call after that call's values were deleted, and useless for
    guessing small values without the key."""
    salt = f"grantry.approvals.input.{organization_id}"
    secret = str(settings.GRANTRY_ENCRYPTION_KEY)
    return {
        path: salted_hmac(
            salt,
            json.dumps(leaf, sort_keys=True, ensure_ascii=False),
            secret=secret,
            algorithm="sha256",
        ).hexdigest()
        for path, leaf in flatten_input(value).items()
    }


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
    # Where a person decides (sign-in required): MCP clients show it to their user.
    document["page_url"] = dashboard_url(approval)
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
                    "page_url",
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
        metadata={
            "approval_id": approval.public_id,
            "status": approval.status,
            "input_sha256": approval.input_digest,
            **(metadata or {}),
        },
        **actor,
    )


def _set_status(approval: Approval, status: str, **fields: Any) -> None:
    if status != ApprovalStatus.PENDING and approval.sealed_input:
        # The exact input is there for deciding; once the request is over it goes.
        fields["sealed_input"] = ""
    approval.status = status
    for name, value in fields.items():
        setattr(approval, name, value)
    approval.save(update_fields=["status", *fields])
