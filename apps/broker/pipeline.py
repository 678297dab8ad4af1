"""The hot path: one agent call, from the token to the answer, as typed steps.

Execute, check (dry run), the raw proxy and MCP tool calls all run `run()`:

    resolve the connections → decide (deny by default) → validate → approve
    (rules that need a person: apps.approvals) → admit (rate limit, quota,
    connection health) → durable attempt (token re-checked) → credential →
    upstream → outcome → answer

A call's target is either an `ActionTarget` (a catalog action with JSON
input) or a `ProxyTarget` (method, path and raw body): the only two things
that differ are how a target is decided and how its request is built, and
each target type implements exactly those two steps.

Every call ends with exactly one audit statement that also gives back the
call's revocation leases (apps/workers/leases.py): a refusal, the dry run's
result or the upstream outcome. The attempt is durably committed before any
upstream byte (fail closed: 503 if it can't be written), and its statement
re-checks the token, so a revocation that committed while the call was in
flight stops it there. The outcome commits without waiting for the WAL
flush (the attempt is already durable); see `audit_record(wait_for_flush=)`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from django.db import DatabaseError, transaction

from apps.audit.exceptions import AuditUnavailable
from apps.audit.models import ActorType, Decision, Outcome
from apps.audit.services import Condition, audit_record
from apps.broker.results import (
    BrokerResult,
    allowed_headers,
    decode_body,
    fail,
    input_digest,
)
from apps.connections import custody
from apps.connections.models import Connection, ConnectionStatus
from apps.connections.selectors import connections_for_call
from apps.core import audit_context
from apps.core.egress import (
    EgressBlocked,
    EgressError,
    EgressTimeout,
    EgressTooLarge,
    egress_request,
)
from apps.core.exceptions import as_service_unavailable
from apps.policies.evaluate import Call as PolicyCall
from apps.policies.evaluate import Decision as PolicyDecision
from apps.policies.evaluate import UnsafePath, evaluate, normalize_path
from apps.policies.selectors import role_rules
from apps.providers.calls import (
    BaseURLParamError,
    InvalidInput,
    build_request,
    resolve_base_url_params,
)
from apps.providers.catalog import Action, Provider
from apps.providers.registry import UnknownAction, UnknownProvider, get_provider, resolve_action
from apps.workers.auth import AgentContext
from apps.workers.leases import still_valid

logger = logging.getLogger(__name__)

REAUTH_MESSAGE = (
    "The connection {name!r} needs to be re-authorised. Ask an admin of the organization to "
    "reconnect it in Grantry (Connections → {name} → Reconnect), then retry."
)
AUDIT_UNAVAILABLE = (
    "Grantry could not record this call in the audit trail, so it did not make it. Retry shortly."
)


@dataclass(frozen=True)
class RequestMeta:
    """What the transport says about this call. Who calls, from where and under which
    request id is the request's audit context (apps.core.audit_context, set by the
    agent authenticator), which `audit_record` reads."""

    surface: str = "api"  # "api" or "mcp"
    # An approved call re-sent: the approval's id, or the first call's Idempotency-Key.
    approval_id: Any = ""
    idempotency_key: str = ""
    # Why the agent asks (shown to approvers).
    reason: Any = ""


@dataclass(frozen=True)
class Upstream:
    """One request to send upstream, credential not yet applied."""

    method: str
    url: str
    headers: dict[str, str]
    query: dict[str, Any] | None = None
    json_body: Any = None
    form_body: Any = None
    content: bytes | None = None


@dataclass
class Chosen:
    """What `decide` settled on: the connection and the policy's decision."""

    connection: Connection
    decision: PolicyDecision


class Sender(Protocol):
    """An upstream step of its own (a tool of an upstream MCP server,
    apps.broker.mcp_upstream): what `prepare` returns instead of an HTTP `Upstream`."""

    def send(self, call: AgentCall) -> BrokerResult: ...


class Target(Protocol):
    verb_base: str

    def audit_fields(self, ctx: AgentContext) -> dict[str, Any]: ...

    def decide(self, call: AgentCall) -> Chosen | BrokerResult: ...

    def prepare(self, call: AgentCall, chosen: Chosen) -> Upstream | Sender | BrokerResult: ...


@dataclass
class AgentCall:
    """One call through the pipeline and everything its audit events repeat."""

    ctx: AgentContext
    target: Target
    meta: RequestMeta
    dry_run: bool = False
    started: float = field(default_factory=time.monotonic)
    provider_key: str = ""
    provider: Provider | None = None
    connection: Connection | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # An approval checked for this call (apps.approvals) and spent by its attempt.
    approval: _CheckedApproval | None = None

    @property
    def verb(self) -> str:
        base = self.target.verb_base
        return "broker.check" if self.dry_run else base

    def record(
        self,
        *,
        action: str | None = None,
        outcome: str,
        decision: str,
        reason: str = "",
        upstream_status: int | None = None,
        latency_ms: int | None = None,
        extra: dict[str, Any] | None = None,
        last: bool = False,
        wait_for_flush: bool = True,
        only_if: Condition | None = None,
    ) -> bool:
        """Append one event of this call; `last` gives the leases back in the same
        statement. False when `only_if` did not hold (nothing written)."""
        ctx, connection = self.ctx, self.connection
        event = audit_record(
            action=action or self.verb,
            organization_id=ctx.organization_id,
            actor_type=ActorType.WORKER,
            actor_id=ctx.worker_id,
            actor_label=ctx.worker_name,
            target_type="connection" if connection is not None else "",
            target_id=connection.pk if connection is not None else "",
            target_label=connection.name if connection is not None else "",
            outcome=outcome,
            decision=decision,
            reason=reason[:2000],
            worker_id=ctx.worker_id,
            token_id=ctx.token_public_id,
            connection_id=connection.pk if connection is not None else None,
            provider=self.provider_key,
            upstream_status=upstream_status,
            latency_ms=latency_ms,
            metadata={**self.metadata, **(extra or {})},
            wait_for_flush=wait_for_flush,
            only_if=only_if,
            release_leases=last and ctx.holds_lease,
        )
        if last:
            ctx.holds_lease = False
        return event is not None

    def refuse(
        self,
        result: BrokerResult,
        *,
        outcome: str = Outcome.DENIED,
        decision: str = Decision.DENIED,
        extra: dict[str, Any] | None = None,
    ) -> BrokerResult:
        """Record a call that ends here, with the answer's message as the reason."""
        if self.approval is not None and not self.approval.spent and result.error is not None:
            # Refused after its approval was checked: the approval stays usable.
            note = (
                f" Approval {self.approval.public_id} was not used: it stays valid until "
                "it expires."
            )
            result = BrokerResult(error=replace(result.error, message=result.message + note))
            extra = {**(extra or {}), "approval": "not_spent"}
        try:
            self.record(
                outcome=outcome, decision=decision, reason=result.message, extra=extra, last=True
            )
        except (DatabaseError, AuditUnavailable):
            logger.exception("audit write failed for a refused call")
            return fail(503, "audit_unavailable", AUDIT_UNAVAILABLE)
        return result


# --- The pipeline ----------------------------------------------------------------


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
    result = _send(call, upstream) if isinstance(upstream, Upstream) else upstream.send(call)
    _outcome(call, result)
    return result


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


@dataclass
class _CheckedApproval:
    """An approval checked for this call, to be spent by the call's attempt."""

    public_id: str
    binding: Any
    spent: bool = False


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
    except (DatabaseError, AuditUnavailable):
        logger.exception("approval request could not be recorded")
        return fail(503, "audit_unavailable", AUDIT_UNAVAILABLE)
    if gate.approval is not None:
        call.metadata["approval_id"] = gate.approval.public_id
    if gate.proceed:
        assert gate.approval is not None
        call.approval = _CheckedApproval(gate.approval.public_id, binding)
        return None
    if gate.status == 202:
        pending = BrokerResult(pending=gate.body, headers=gate.headers)
        try:
            call.record(
                outcome=Outcome.FAILURE,
                decision=Decision.NONE,
                reason=gate.message,
                extra={"approval": "pending"},
                last=True,
            )
        except (DatabaseError, AuditUnavailable):
            logger.exception("audit write failed for a call waiting for approval")
            return fail(503, "audit_unavailable", AUDIT_UNAVAILABLE)
        return pending
    return call.refuse(fail(gate.status, gate.code, gate.message, **gate.details))


def _dry_run_answer(call: AgentCall, chosen: Chosen) -> BrokerResult:
    if chosen.decision.approval_required:
        # A dry run never creates an approval request; it says one would be needed.
        result = BrokerResult(
            decision="approval_required",
            reason=chosen.decision.reason,
            rule_id=chosen.decision.rule_id,
            connection=chosen.connection.name,
        )
        try:
            call.record(
                outcome=Outcome.SUCCESS,
                decision=Decision.NONE,
                reason=chosen.decision.reason,
                extra={"approval": "required"},
                last=True,
            )
        except (DatabaseError, AuditUnavailable):
            logger.exception("audit write failed for a dry run")
            return fail(503, "audit_unavailable", AUDIT_UNAVAILABLE)
        return result
    result = BrokerResult(
        decision="allowed",
        reason=chosen.decision.reason,
        rule_id=chosen.decision.rule_id,
        connection=chosen.connection.name,
    )
    try:
        call.record(
            outcome=Outcome.SUCCESS,
            decision=Decision.ALLOWED,
            reason=chosen.decision.reason,
            last=True,
        )
    except (DatabaseError, AuditUnavailable):
        logger.exception("audit write failed for a dry run")
        return fail(503, "audit_unavailable", AUDIT_UNAVAILABLE)
    return result


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

    try:
        if call.approval is None:
            recorded = _record_attempt(call, chosen)
        else:
            recorded = _spend_approval_and_record_attempt(call, chosen)
    except ApprovalRefused as refused:
        call.approval = None  # not spendable: the refusal says why
        return call.refuse(fail(refused.status, refused.code, refused.message, **refused.details))
    except (DatabaseError, AuditUnavailable):
        logger.exception("audit write failed; upstream not called")
        return fail(503, "audit_unavailable", AUDIT_UNAVAILABLE)
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
        decision=Decision.ALLOWED,
        reason=chosen.decision.reason,
        only_if=still_valid(call.ctx.token_pk),
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
    connection = call.connection
    assert connection is not None
    provider, provider_key = call.provider, call.provider_key
    assert provider is not None
    try:
        auth = custody.auth_for(connection, provider)
    except custody.NeedsReauth:
        return fail(
            409,
            "needs_reauth",
            REAUTH_MESSAGE.format(name=connection.name),
            connection=connection.name,
        )
    params = {**(upstream.query or {}), **auth.params} or None
    try:
        response = egress_request(
            upstream.method,
            upstream.url,
            headers={**upstream.headers, **auth.headers},
            params=params,
            json=upstream.json_body,
            data=upstream.form_body,
            content=upstream.content,
        )
    except EgressError as exc:
        return _egress_failure(exc, provider_key)
    return _answer(response, provider_key)


def _outcome(call: AgentCall, result: BrokerResult) -> None:
    """Record the outcome in one statement that commits without waiting for the WAL
    flush and gives the leases back. A failure here is logged loudly and does not
    turn a completed upstream call into an error the agent might retry."""
    error = result.error
    if error is None:
        outcome = Outcome.SUCCESS if (result.upstream_status or 0) < 400 else Outcome.FAILURE
        if result.mcp_result is not None and result.mcp_result.get("isError"):
            outcome = Outcome.FAILURE  # the tool said its call failed
    else:
        outcome = Outcome.ERROR if error.status >= 500 else Outcome.FAILURE
    try:
        call.record(
            outcome=outcome,
            decision=Decision.ALLOWED,
            reason=error.message if error else "",
            upstream_status=result.upstream_status,
            latency_ms=int((time.monotonic() - call.started) * 1000),
            extra={"error": error.code} if error else None,
            last=True,
            wait_for_flush=False,
        )
    except (DatabaseError, AuditUnavailable):
        logger.exception("audit outcome write failed after the upstream call; attempt is recorded")
    connection = call.connection
    if connection is not None:
        from apps.connections.services import connection_mark_used

        try:
            # At most once a minute per connection.
            connection_mark_used(connection_id=connection.pk, last_used_at=connection.last_used_at)
        except (DatabaseError, AuditUnavailable):
            logger.exception("could not record the connection's last use")


def _egress_failure(exc: EgressError, provider_key: str) -> BrokerResult:
    upstream = {"upstream": provider_key, "host": exc.host, "elapsed_ms": exc.elapsed_ms}
    if isinstance(exc, EgressTimeout):
        return fail(
            504,
            "upstream_timeout",
            f"{provider_key} ({exc.host}) did not answer in time "
            f"(gave up after {exc.elapsed_ms} ms).",
            **upstream,
        )
    if isinstance(exc, EgressTooLarge):
        return fail(
            502,
            "upstream_response_too_large",
            f"{provider_key} ({exc.host}) answered with a body larger than Grantry passes on.",
            **upstream,
        )
    if isinstance(exc, EgressBlocked):
        return fail(
            502, "upstream_blocked", f"Grantry refused to contact {provider_key}: {exc}", **upstream
        )
    return fail(
        502,
        "upstream_unreachable",
        f"Could not reach {provider_key} ({exc.host}) after {exc.elapsed_ms} ms.",
        **upstream,
    )


def _answer(response: Any, provider_key: str) -> BrokerResult:
    headers = allowed_headers(response.headers)
    body, is_json = decode_body(response.content, headers.get("content-type", ""))
    result = BrokerResult(
        upstream_status=response.status_code,
        body=body,
        raw_body=response.content,
        headers=headers,
        is_json=is_json,
        latency_ms=response.elapsed_ms,
    )
    if response.status_code == 429:
        retry = headers.get("retry-after", "")
        result.error = fail(
            429,
            "upstream_rate_limited",
            f"{provider_key} is rate-limiting this connection"
            + (f"; retry after {retry} s." if retry else "."),
            upstream=provider_key,
            upstream_status=429,
            body=body,
            headers={"Retry-After": retry} if retry else {},
        ).error
    return result


# --- Targets ---------------------------------------------------------------------


@dataclass
class ActionTarget:
    """A catalog action called with JSON input (execute, check, MCP tools/call)."""

    action_name: str
    connection_ref: str | int | None
    input: dict[str, Any]
    verb_base: str = "broker.execute"
    action: Action | None = None

    def audit_fields(self, ctx: AgentContext) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "action": self.action_name,
            "input_sha256": input_digest(self.input),
        }
        if ctx.store_broker_input:
            fields["input"] = self.input
        return fields

    def decide(self, call: AgentCall) -> Chosen | BrokerResult:
        """Decide on the connections the role allows for this action: the one named,
        or — naming none — the only allowed one of the provider's connections. Asks
        for `connection` only when more than one allowed connection fits."""
        ctx = call.ctx
        try:
            call.provider, action = resolve_action(
                self.action_name, organization=ctx.organization_id
            )
        except UnknownAction:
            return call.refuse(
                fail(
                    404,
                    "unknown_action",
                    f"There is no action {self.action_name!r}. GET /api/v1/actions lists yours.",
                )
            )
        self.action = action
        call.provider_key = provider_key = action.provider_key
        candidates = connections_for_call(
            organization_id=ctx.organization_id, provider_key=provider_key, ref=self.connection_ref
        )
        if not candidates:
            if self.connection_ref not in (None, ""):
                return call.refuse(
                    fail(
                        404,
                        "connection_not_found",
                        f"No {provider_key} connection {str(self.connection_ref)!r} in this "
                        "organization.",
                    )
                )
            return call.refuse(
                fail(
                    409,
                    "no_connection",
                    f"This organization has no {provider_key} connection. Ask an admin to "
                    f"connect {provider_key} in Grantry.",
                )
            )
        rules = role_rules(ctx.role_id, ctx.rules_version)
        decided = [
            (
                connection,
                evaluate(
                    rules,
                    PolicyCall.for_action(
                        action_name=action.name,
                        action_class=str(action.action_class),
                        connection_id=connection.pk,
                        connection_name=connection.name,
                        input=self.input,
                        role_name=ctx.role_name,
                    ),
                ),
            )
            for connection in candidates
        ]
        # A call a rule allows only after approval fits too (the approval step decides).
        allowed = [(c, d) for c, d in decided if d.allowed or d.approval_required]
        if len(allowed) == 1:
            return Chosen(*allowed[0])
        if len(allowed) > 1:
            names = [c.name for c, _ in allowed]
            return call.refuse(
                fail(
                    400,
                    "connection_required",
                    "More than one connection your role allows fits; name one in "
                    f"'connection' ({', '.join(names)}).",
                    connections=names,
                )
            )
        # Denied on every candidate: the reason of the named (or first) one.
        call.connection = candidates[0] if len(candidates) == 1 else None
        reason = decided[0][1].reason
        return call.refuse(
            fail(
                403,
                "denied",
                reason,
                action=self.action_name,
                **({"connection": candidates[0].name} if len(candidates) == 1 else {}),
            )
        )

    def prepare(self, call: AgentCall, chosen: Chosen) -> Upstream | BrokerResult:
        assert self.action is not None
        connection = chosen.connection
        assert call.provider is not None
        try:
            prepared = build_request(
                call.provider, self.action, self.input, base_url_params=connection.base_url_params
            )
        except InvalidInput as exc:
            fields = [e.as_dict() for e in exc.errors]
            return call.refuse(
                fail(
                    400,
                    "invalid_input",
                    "The input does not match the action's schema.",
                    fields=fields,
                ),
                outcome=Outcome.FAILURE,
                decision=Decision.ALLOWED,
                extra={"fields": [f["path"] for f in fields]},
            )
        except BaseURLParamError as exc:
            return _misconfigured(call, connection, exc)
        return Upstream(
            method=prepared.method,
            url=prepared.url,
            headers=prepared.headers,
            query=prepared.query,
            json_body=prepared.json_body,
            form_body=prepared.form_body,
        )


@dataclass
class ProxyTarget:
    """A raw HTTP call passed through to a connection's API (`/api/v1/proxy/…`)."""

    connection_ref: str
    method: str
    path: str
    query: str
    body: bytes
    content_type: str
    verb_base: str = "broker.proxy"
    clean_path: str = ""

    def audit_fields(self, ctx: AgentContext) -> dict[str, Any]:  # noqa: ARG002 - the Target protocol's signature
        return {
            "method": self.method,
            "path": self.path[:500],
            "input_sha256": input_digest(
                {"query": self.query, "body": self.body.decode("utf-8", "replace")}
            ),
        }

    def decide(self, call: AgentCall) -> Chosen | BrokerResult:
        ctx = call.ctx
        found = connections_for_call(
            organization_id=ctx.organization_id, provider_key=None, ref=self.connection_ref
        )
        if not found:
            return call.refuse(
                fail(
                    404,
                    "connection_not_found",
                    f"No connection {self.connection_ref!r} in this organization.",
                )
            )
        connection = call.connection = found[0]
        call.provider_key = connection.provider_key
        if self.path.startswith("/"):
            # A leading '//' would name a host.
            return call.refuse(fail(400, "unsafe_path", "The proxy path must not start with '/'."))
        try:
            self.clean_path = normalize_path("/" + self.path if self.path else "/")
        except UnsafePath as exc:
            return call.refuse(fail(400, "unsafe_path", f"The proxy path was rejected: {exc}."))
        decision = evaluate(
            role_rules(ctx.role_id, ctx.rules_version),
            PolicyCall.for_proxy(
                provider_key=connection.provider_key,
                method=self.method,
                path=self.clean_path,
                connection_id=connection.pk,
                connection_name=connection.name,
                role_name=ctx.role_name,
            ),
        )
        if not decision.allowed and not decision.approval_required:
            return call.refuse(
                fail(
                    403,
                    "denied",
                    decision.reason,
                    method=self.method,
                    path=self.clean_path,
                    connection=connection.name,
                )
            )
        return Chosen(connection, decision)

    def prepare(self, call: AgentCall, chosen: Chosen) -> Upstream | BrokerResult:
        connection = chosen.connection
        try:
            provider = call.provider = get_provider(
                call.provider_key, organization=call.ctx.organization_id
            )
            # Per-connection URL parameters (e.g. a Zendesk subdomain) shape the base URL.
            base = resolve_base_url_params(provider, connection.base_url_params).api_base_url
        except (UnknownProvider, BaseURLParamError) as exc:
            return _misconfigured(call, connection, exc)
        url = base.rstrip("/") + self.clean_path + (f"?{self.query}" if self.query else "")
        headers = {"Content-Type": self.content_type} if self.body and self.content_type else {}
        return Upstream(method=self.method, url=url, headers=headers, content=self.body or None)


def _misconfigured(call: AgentCall, connection: Connection, exc: Exception) -> BrokerResult:
    return call.refuse(
        fail(
            409,
            "connection_misconfigured",
            f"The connection {connection.name!r} cannot be used: {exc} "
            "Ask an admin to check the connection.",
            connection=connection.name,
        ),
        outcome=Outcome.ERROR,
        decision=Decision.ALLOWED,
    )


def start(
    ctx: AgentContext, target: Target, meta: RequestMeta, *, dry_run: bool = False
) -> AgentCall:
    """A call ready to `run()`, with the audit fields every one of its events repeats."""
    call = AgentCall(ctx=ctx, target=target, meta=meta, dry_run=dry_run)
    call.metadata = {"role_id": ctx.role_id, "surface": meta.surface, **target.audit_fields(ctx)}
    if ctx.oauth_client:  # a token Grantry's OAuth server issued (apps.mcpauth)
        call.metadata["oauth_client"] = ctx.oauth_client
    return call


def reject_input(
    ctx: AgentContext, meta: RequestMeta, verb: str, problem: Any, **named: str
) -> BrokerResult:
    """A body the input gate refused (apps.broker.inputs): audited for a valid token,
    with the reason and what the call named (written out storably: NUL as \\u0000,
    lone surrogates escaped), and answered with the gate's status and code."""
    call = AgentCall(ctx=ctx, target=_Rejected(verb), meta=meta)
    call.metadata = {"role_id": ctx.role_id, "surface": meta.surface}
    if ctx.oauth_client:
        call.metadata["oauth_client"] = ctx.oauth_client
    for key, text in named.items():
        storable = text[:500].replace("\x00", "\\u0000")
        call.metadata[key] = storable.encode("utf-8", "backslashreplace").decode("utf-8")
    return call.refuse(fail(problem.status, problem.code, problem.message))


@dataclass
class _Rejected:
    """The target of a call whose body never made it past the input gate."""

    verb_base: str

    def audit_fields(self, ctx: AgentContext) -> dict[str, Any]:  # noqa: ARG002 - the Target protocol's signature
        return {}

    def decide(self, call: AgentCall) -> Chosen | BrokerResult:
        raise NotImplementedError

    def prepare(self, call: AgentCall, chosen: Chosen) -> Upstream | BrokerResult:
        raise NotImplementedError
