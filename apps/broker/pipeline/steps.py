"""The pipeline's steps, in the order `run()` takes them (the package's docstring draws
the whole path). Each step is a function of the call; a step that ends the call writes
its last event through `AgentCall.end`/`refuse` (the audit event, or 503)."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction

from apps.audit.exceptions import AuditUnavailable
from apps.audit.models import AuditEvent, Decision, Outcome
from apps.audit.services import Condition
from apps.broker.pipeline.call import (
    AUDIT_FAILURES,
    AgentCall,
    CheckedApproval,
    Chosen,
    Upstream,
    audit_unavailable,
)
from apps.broker.pipeline.targets import ActionTarget, ProxyTarget
from apps.broker.results import (
    BrokerResult,
    egress_failure,
    fail,
    refresh_unavailable,
    upstream_answer,
)
from apps.connections import credentials, custody
from apps.connections.models import ConnectionStatus
from apps.connections.services import RefreshTemporarilyFailed
from apps.core import audit_context
from apps.core.db import connections_release
from apps.core.egress import EgressError, egress_request
from apps.core.exceptions import as_service_unavailable
from apps.workers import fence

logger = logging.getLogger(__name__)

REAUTH_MESSAGE = (
    "The connection {name!r} needs to be re-authorised. Ask an admin of the organization to "
    "reconnect it in Grantry (Connections → {name} → Reconnect), then retry."
)


def run(call: AgentCall) -> BrokerResult:
    """Decide, audit and (unless a dry run) perform one agent call."""
    chosen = call.target.decide(call)
    if isinstance(chosen, BrokerResult):
        return chosen
    call.connection = chosen.connection
    call.metadata["rule_id"] = chosen.decision.rule_id
    upstream = call.target.prepare(call, chosen)
    if isinstance(upstream, BrokerResult):
        return upstream
    if not chosen.decision.approval_required and call.meta.approval_id not in (None, ""):
        return _approval_not_needed(call, chosen)
    if call.dry_run:
        return _dry_run_answer(call, chosen)
    if chosen.decision.approval_required:
        waiting = _approve(call, chosen)
        if waiting is not None:
            return waiting
    refused = _admit(call, chosen)
    if refused is not None:
        return refused
    refused = _attempt(call, chosen)
    if refused is not None:
        return refused
    sent = time.monotonic()
    result = _send(call, upstream) if isinstance(upstream, Upstream) else upstream.send(call)
    call.upstream_seconds = time.monotonic() - sent
    return _outcome(call, result)


def _approval_not_needed(call: AgentCall, chosen: Chosen) -> BrokerResult:
    """An approval id sent with a call no rule asks approval for: refused rather than
    ignored, so an agent never believes an approval covered a call it did not."""
    sent = str(call.meta.approval_id)[:40]
    call.metadata["approval_id"] = sent
    rule = f"rule #{chosen.decision.rule_id}" if chosen.decision.rule_id else "its rule"
    return call.refuse(
        fail(
            403,
            "approval_call_mismatch",
            f"This call needs no approval ({rule} allows it without one), so approval "
            f"{sent!r} cannot be used with it. Send the call without 'approval'.",
            approval_id=sent,
        )
    )


def _approve(call: AgentCall, chosen: Chosen) -> BrokerResult | None:
    """A rule that allows this call only after a person says yes: ask (202), or go on
    with the approval bound to this exact call, checked here and spent by `_attempt`."""
    from apps.approvals.services import ApprovalBinding, approval_gate

    target, meta, connection = call.target, call.meta, chosen.connection
    digest = str(call.metadata.get("input_sha256", ""))
    if isinstance(target, ActionTarget):
        binding = ApprovalBinding.for_action(
            ctx=call.ctx,
            action_name=target.action_name,
            connection_id=connection.pk,
            input_digest=digest,
        )
        action_input: Any = target.input
    else:
        assert isinstance(target, ProxyTarget)
        binding = ApprovalBinding.for_proxy(
            ctx=call.ctx,
            method=target.method,
            path=target.clean_path,
            connection_id=connection.pk,
            input_digest=digest,
        )
        # What the digest covers: approvers see the query and body the call would send.
        action_input = {"query": target.query, "body": target.body.decode("utf-8", "replace")}
    try:
        gate = approval_gate(
            binding=binding,
            decision=chosen.decision,
            approval_id=meta.approval_id,
            idempotency_key=meta.idempotency_key,
            connection_name=connection.name,
            input=action_input,
            reason=meta.reason,
            request_id=audit_context.current().request_id,
        )
    except AUDIT_FAILURES:
        return audit_unavailable("approval request could not be recorded")
    if gate.approval is not None:
        call.metadata["approval_id"] = gate.approval.public_id
    if gate.proceed:
        assert gate.approval is not None
        call.approval = CheckedApproval(gate.approval.public_id, binding)
        return None
    if gate.status == 202:
        return call.end(
            BrokerResult(pending=gate.body, headers=gate.headers),
            outcome=Outcome.PENDING,
            decision=Decision.APPROVAL,
            reason=gate.message,
            extra={"approval": "pending"},
            log_message="audit write failed for a call waiting for approval",
        )
    return _refuse_approval(call, fail(gate.status, gate.code, gate.message, **gate.details))


# The approval gate's refusals that are the answer "no": a person denied the approval,
# or nobody may approve this call. The other approval_* refusals refuse one approval
# for one call; anything else (a malformed approval id) is refused as a denial.
REFUSALS_THAT_DENY = frozenset({"approval_denied", "no_eligible_approver"})


def _refuse_approval(call: AgentCall, result: BrokerResult) -> BrokerResult:
    """A call refused by the approval check: a denial when a person said no, else
    (the approval already used, expired, for another input …) its own outcome
    `refused`, which no page counts as a denial by the role."""
    code = result.error.code if result.error is not None else ""
    if not code.startswith("approval_") or code in REFUSALS_THAT_DENY:
        return call.refuse(result)
    return call.refuse(result, outcome=Outcome.REFUSED, decision=Decision.APPROVAL)


def _dry_run_answer(call: AgentCall, chosen: Chosen) -> BrokerResult:
    """What the call would get (check): allowed, or that it needs approval. A dry run
    never creates an approval request; it says one would be needed."""
    decision = chosen.decision
    needs_approval = decision.approval_required
    return call.end(
        BrokerResult(
            decision="approval_required" if needs_approval else "allowed",
            reason=decision.reason,
            rule_id=decision.rule_id,
            connection=chosen.connection.name,
        ),
        outcome=Outcome.SUCCESS,
        decision=Decision.APPROVAL if needs_approval else Decision.ALLOWED,
        reason=decision.reason,
        extra={"approval": "required"} if needs_approval else None,
        log_message="audit write failed for a dry run",
    )


def _admit(call: AgentCall, chosen: Chosen) -> BrokerResult | None:
    """The last gates before an allowed call goes upstream: the rule's rate limit (per
    token), its quota (per worker), then the connection's health. A limit that cannot be
    counted (the shared cache is down) refuses the call: 503 with Retry-After."""
    try:
        refused = _within_limits(call, chosen)
    except Exception as exc:
        unavailable = as_service_unavailable(exc)
        if unavailable is None:
            raise
        logger.warning("rate limit or quota not counted (%s): call refused", unavailable.code)
        refused = call.refuse(
            fail(
                503,
                unavailable.code,
                unavailable.message,
                headers={"Retry-After": str(unavailable.retry_after)},
            ),
            outcome=Outcome.FAILURE,
            decision=Decision.ALLOWED,
        )
    if refused is not None:
        return refused
    connection = chosen.connection
    if connection.status != ConnectionStatus.ACTIVE:
        message = REAUTH_MESSAGE.format(name=connection.name)
        return call.refuse(
            fail(409, "needs_reauth", message, connection=connection.name),
            outcome=Outcome.FAILURE,
            decision=Decision.ALLOWED,
        )
    return None


def _within_limits(call: AgentCall, chosen: Chosen) -> BrokerResult | None:
    """Count the call against its rule's rate limit and quota (the shared cache)."""
    per_minute = chosen.decision.rate_limit_per_minute
    if per_minute and chosen.decision.rule_id is not None:
        from apps.policies.ratelimit import rate_limit_check

        retry_after = rate_limit_check(
            rule_id=chosen.decision.rule_id,
            token_id=call.ctx.token_public_id,
            per_minute=per_minute,
        )
        if retry_after is not None:
            return call.refuse(
                fail(
                    429,
                    "rate_limited",
                    f"Rate limit of {per_minute} calls per minute for this rule reached; "
                    f"retry after {retry_after} s.",
                    headers={"Retry-After": str(retry_after)},
                    retry_after=retry_after,
                )
            )
    quota = chosen.decision.quota
    if quota is not None and chosen.decision.rule_id is not None:
        from apps.policies.ratelimit import quota_check

        exceeded = quota_check(
            rule_id=chosen.decision.rule_id, worker_id=call.ctx.worker_id, quota=quota
        )
        if exceeded is not None:
            return call.refuse(
                fail(
                    429,
                    "quota_exceeded",
                    exceeded.reason,
                    headers={"Retry-After": str(exceeded.retry_after)},
                    retry_after=exceeded.retry_after,
                )
            )
    return None


def _attempt(call: AgentCall, chosen: Chosen) -> BrokerResult | None:
    """Fail closed: no durably recorded attempt, no upstream call. The statement also
    re-checks the token (revoked, expired, worker disabled since authentication).
    An approved call spends its approval in the same transaction as its attempt, so
    the approval is used up exactly when the call goes upstream."""
    from apps.approvals.services import ApprovalRefused

    # t0: the request may be written until t0 + W (apps/workers/fence.py).
    call.send_by = fence.window_start() + fence.send_window()
    try:
        if call.approval is None:
            recorded = _record_attempt(call, chosen)
        else:
            recorded = _spend_approval_and_record_attempt(call, chosen)
    except ApprovalRefused as refused:
        call.approval = None  # not spendable: the refusal says why
        return _refuse_approval(
            call, fail(refused.status, refused.code, refused.message, **refused.details)
        )
    except AUDIT_FAILURES:
        return audit_unavailable("audit write failed; upstream not called")
    if not recorded:
        return call.refuse(
            fail(
                401,
                "token_invalid",
                "The token was revoked (or its worker disabled) while this call was in "
                "progress; nothing was sent upstream.",
                headers={"WWW-Authenticate": 'Bearer realm="grantry", error="invalid_token"'},
            )
        )
    return None


def _record_attempt(call: AgentCall, chosen: Chosen) -> bool:
    return call.record(
        action=f"{call.verb}.attempt",
        outcome=Outcome.SUCCESS,
        decision=Decision.APPROVED if call.approval is not None else Decision.ALLOWED,
        reason=chosen.decision.reason,
        only_if=fence.attempt_fence(
            token_pk=call.ctx.token_pk,
            worker_id=call.ctx.worker_id,
            organization_id=call.ctx.organization_id,
        ),
    )


def _spend_approval_and_record_attempt(call: AgentCall, chosen: Chosen) -> bool:
    """One transaction: claim the approval (row lock, every binding again, `executed`),
    then the attempt. A token revoked meanwhile rolls the claim back with it. A refused
    claim raises ApprovalRefused after its own audit event has committed."""
    from apps.approvals.services import ApprovalRefused, approval_claim_for_execution

    approval = call.approval
    assert approval is not None
    refused: ApprovalRefused | None = None
    with transaction.atomic():
        try:
            approval_claim_for_execution(approval_id=approval.public_id, binding=approval.binding)
        except ApprovalRefused as exc:
            refused = exc  # leave the block normally: the refusal's audit event commits
        else:
            recorded = _record_attempt(call, chosen)
            if not recorded:
                transaction.set_rollback(True)
    if refused is not None:
        raise refused
    approval.spent = recorded
    return recorded


def _send(call: AgentCall, upstream: Upstream) -> BrokerResult:
    """Credential, then upstream: the connection's secret applied (refreshed under a row
    lock when due) and the request sent through the egress guard."""
    connection = call.connection
    assert connection is not None
    provider, provider_key = call.provider, call.provider_key
    assert provider is not None
    try:
        auth = credentials.auth_for(connection, provider)
    except custody.NeedsReauth:
        return fail(
            409,
            "needs_reauth",
            REAUTH_MESSAGE.format(name=connection.name),
            connection=connection.name,
        )
    except RefreshTemporarilyFailed as exc:
        return refresh_unavailable(connection.name, str(exc))
    params = {**(upstream.query or {}), **auth.params} or None
    # No database connection is held while the upstream answers (with the pool; the
    # outcome takes one again).
    connections_release(only_pooled=True)
    try:
        response = egress_request(
            upstream.method,
            upstream.url,
            headers={**upstream.headers, **auth.headers},
            params=params,
            json=upstream.json_body,
            data=upstream.form_body,
            content=upstream.content,
            send_by=call.send_by,
        )
    except EgressError as exc:
        return egress_failure(exc, provider_key)
    return upstream_answer(response, provider_key)


def _outcome(call: AgentCall, result: BrokerResult) -> BrokerResult:
    """Record the outcome in one statement, committed as durably as the attempt (a
    crash of the database server loses no outcome it acknowledged: the chaos run
    crashes PostgreSQL under load and counts). The call already went upstream, so a
    failed write is tried again on a fresh
    database connection for up to GRANTRY_AUDIT_OUTCOME_RETRY_SECONDS (PgBouncer or
    PostgreSQL restarting); if it still fails, the upstream's answer is withheld
    (502 `outcome_unrecorded`: no success without its audit record) and the attempt,
    already durable, stays in the trail."""
    error = result.error
    if error is None:
        outcome = Outcome.SUCCESS if (result.upstream_status or 0) < 400 else Outcome.FAILURE
        if result.mcp_result is not None and result.mcp_result.get("isError"):
            outcome = Outcome.FAILURE  # the tool said its call failed
    else:
        outcome = Outcome.ERROR if error.status >= 500 else Outcome.FAILURE
    deadline = time.monotonic() + settings.GRANTRY_AUDIT_OUTCOME_RETRY_SECONDS
    pause = 0.1
    retry: Condition | None = None
    while True:
        try:
            if call.record(
                outcome=outcome,
                decision=Decision.APPROVED if call.approval is not None else Decision.ALLOWED,
                reason=error.message if error else "",
                upstream_status=result.upstream_status,
                latency_ms=int((time.monotonic() - call.started) * 1000),
                extra={"error": error.code} if error else None,
                last=True,
                only_if=retry,
            ):
                break
            if retry is not None:
                break  # the earlier try was written after all (its reply was lost)
            raise AuditUnavailable  # nothing written: never a success without its event
        except AUDIT_FAILURES:
            retry = _not_yet_written(call)
            if time.monotonic() + pause > deadline or db_connection.in_atomic_block:
                logger.exception("audit outcome write failed after the upstream call")
                return _unrecorded(call, result)
            db_connection.close()  # a broken connection: the next try opens a new one
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
    connection = call.connection
    if connection is not None:
        from apps.connections.services import connection_mark_used

        try:
            # At most once a minute per connection.
            connection_mark_used(connection_id=connection.pk, last_used_at=connection.last_used_at)
        except AUDIT_FAILURES:
            logger.exception("could not record the connection's last use")
    return result


# A try after a failed one writes only if the failed one did not commit: a commit whose
# reply was lost (PgBouncer or the network cut the connection) must not be doubled.
_NOT_YET_WRITTEN_SQL = (
    f"NOT EXISTS (SELECT 1 FROM {AuditEvent._meta.db_table} o"  # noqa: S608 - metadata only
    " WHERE o.organization_id = %(retry_org)s AND o.action = %(retry_action)s"
    " AND o.id > %(retry_after_id)s AND o.request_id = %(retry_request_id)s)"
)


def _not_yet_written(call: AgentCall) -> Condition:
    return Condition(
        _NOT_YET_WRITTEN_SQL,
        {
            "retry_org": call.ctx.organization_id,
            "retry_action": call.verb,
            "retry_after_id": call.last_event_id,
            "retry_request_id": audit_context.current().request_id,
        },
    )


def _unrecorded(call: AgentCall, result: BrokerResult) -> BrokerResult:
    where = call.provider_key or "the upstream"
    answered = f" (it answered {result.upstream_status})" if result.upstream_status else ""
    return fail(
        502,
        "outcome_unrecorded",
        f"The call reached {where}{answered}, but Grantry could not record its outcome, "
        "so its answer is withheld. The attempt is in the audit trail. Check the call's "
        "effect before you repeat a write.",
    )
