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
                            reason=body.get("reason") or "",
                            request_id=audit_context.current().request_id)

   `input_digest` is apps.broker.results.input_digest, exactly what the audit
   trail stores as `input_sha256`; this module only compares the strings.

2. `gate.proceed` is True: the approval was checked for this very call (row
   lock, every binding) but not spent. Admit the call (rate limit, quota,
   connection), then spend it with `approval_claim_for_execution` in the same
   transaction as the call's attempt record (marked `executed`, audited as
   `approval.executed`), so only a call that goes upstream spends it; a refusal
   in between leaves it usable until it expires. Put `gate.approval.public_id`
   into the call's audit metadata as `approval_id`. Once spent, it is spent even
   if the upstream call fails: it executes at most once.

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

`approval_request`, `approval_check_for_execution` and
`approval_claim_for_execution` (raise `ApprovalRefused`
with .status/.code/.message), `approval_decide`, `approvals_expire` and
`approval_settings_update` are the individual services behind the gate, the
dashboard, the management API and the periodic task. Every one writes its audit
events in its own transaction; events of one approval share
`metadata.approval_id` and target the approval (`target_type="approval"`).

A refusal that changes the approval (expired, void) must be committed before it
is reported, so those services commit first and raise after their transaction.
"""

from apps.approvals.services.base import (
    INPUT_DIFFERS,
    RETRY_AFTER_SECONDS,
    ApprovalBinding,
    ApprovalGate,
    ApprovalRefused,
    agent_document,
    approvals_received,
    dashboard_url,
    input_fingerprints,
    pending_gate,
    redact_input,
    status_url,
)
from apps.approvals.services.calls import (
    approval_check_for_execution,
    approval_claim_for_execution,
    approval_gate,
    approval_request,
)
from apps.approvals.services.decisions import (
    approval_decide,
    approvals_expire,
    eligible_approvers,
    excluded_approver_ids,
    input_for,
    may_decide,
)
from apps.approvals.services.links import approval_link_open, approval_links_create
from apps.approvals.services.org_settings import approval_settings_update

__all__ = [
    "INPUT_DIFFERS",
    "RETRY_AFTER_SECONDS",
    "ApprovalBinding",
    "ApprovalGate",
    "ApprovalRefused",
    "agent_document",
    "approval_check_for_execution",
    "approval_claim_for_execution",
    "approval_decide",
    "approval_gate",
    "approval_link_open",
    "approval_links_create",
    "approval_request",
    "approval_settings_update",
    "approvals_expire",
    "approvals_received",
    "dashboard_url",
    "eligible_approvers",
    "excluded_approver_ids",
    "input_fingerprints",
    "input_for",
    "may_decide",
    "pending_gate",
    "redact_input",
    "status_url",
]
