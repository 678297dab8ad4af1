"""One agent call through the pipeline: what it carries, the events it writes, and the
one "write the audit event or answer 503" step every ending goes through."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from django.db import DatabaseError

from apps.audit.exceptions import AuditUnavailable
from apps.audit.models import ActorType, Decision, Outcome
from apps.audit.services import Condition, audit_record
from apps.broker.results import BrokerResult, fail
from apps.connections.models import Connection
from apps.core import metrics
from apps.policies.evaluate import Decision as PolicyDecision
from apps.providers.catalog import Provider
from apps.workers.auth import AgentContext

logger = logging.getLogger(__name__)

AUDIT_UNAVAILABLE = (
    "Grantry could not record this call in the audit trail, so it did not make it. Retry shortly."
)
# What a failed audit write raises: the call must not happen (or, after the upstream
# call, is only logged).
AUDIT_FAILURES = (DatabaseError, AuditUnavailable)


def audit_unavailable(log_message: str) -> BrokerResult:
    """The answer when a call's audit event could not be written: 503, nothing done.
    Call it from the `except AUDIT_FAILURES` block, so the log line has the traceback."""
    logger.exception(log_message)
    return fail(
        503,
        "audit_unavailable",
        AUDIT_UNAVAILABLE,
        headers={"Retry-After": str(AuditUnavailable.retry_after)},
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

    @classmethod
    def from_request(
        cls, request: Any, surface: str = "api", *, approval_id: Any = "", reason: Any = ""
    ) -> RequestMeta:
        """The meta of an agent API or MCP request (its Idempotency-Key header)."""
        return cls(
            surface=surface,
            approval_id=approval_id,
            idempotency_key=request.META.get("HTTP_IDEMPOTENCY_KEY", "")[:200],
            reason=reason,
        )


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
    """An upstream step of its own, which `prepare` returns instead of an HTTP
    `Upstream`: a tool of an upstream MCP server (apps/broker/mcp_upstream.py)."""

    def send(self, call: AgentCall) -> BrokerResult: ...


class Target(Protocol):
    """What a call is made to. A target type implements the two steps in which targets
    differ (apps/broker/pipeline/targets.py); every other step is the pipeline's."""

    verb_base: str

    def audit_fields(self, ctx: AgentContext) -> dict[str, Any]: ...

    def decide(self, call: AgentCall) -> Chosen | BrokerResult: ...

    def prepare(self, call: AgentCall, chosen: Chosen) -> Upstream | Sender | BrokerResult: ...


@dataclass
class CheckedApproval:
    """An approval checked for this call, to be spent by the call's attempt."""

    public_id: str
    binding: Any
    spent: bool = False


@dataclass
class AgentCall:
    """One call through the pipeline and everything its audit events repeat."""

    ctx: AgentContext
    target: Target
    meta: RequestMeta
    dry_run: bool = False
    started: float = field(default_factory=time.monotonic)
    upstream_seconds: float | None = None  # set by the upstream step
    last_event_id: int = 0  # the id of this call's latest event written
    provider_key: str = ""
    provider: Provider | None = None
    connection: Connection | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # An approval checked for this call (apps.approvals) and spent by its attempt.
    approval: CheckedApproval | None = None
    # Until when (time.monotonic()) the upstream request may be written: set just
    # before the attempt statement (apps/workers/fence.py, the send window).
    send_by: float | None = None

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
        only_if: Condition | None = None,
    ) -> bool:
        """Append one event of this call; `last`: its last (the call's metrics are
        counted then). False when `only_if` did not hold (nothing written)."""
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
            only_if=only_if,
            # A worker acting for a member: both principals on every event of the call.
            **(
                {
                    "on_behalf_of_id": ctx.acting_for_id,
                    "on_behalf_of_label": ctx.acting_for_label,
                }
                if ctx.acting_for_id is not None
                else {}
            ),
        )
        if event is not None:
            self.last_event_id = event.id
            if last:
                self._count(decision=decision, outcome=outcome)
        return event is not None

    def _count(self, *, decision: str, outcome: str) -> None:
        """The call's metrics (apps.core.metrics), once, with its last event."""
        metadata = self.metadata
        action = metadata.get("mcp_tool") or metadata.get("action") or metadata.get("method")
        metrics.call_ended(
            surface=self.meta.surface,
            provider=self.provider_key,
            action=str(action or ""),
            decision=decision,
            outcome=outcome,
            seconds=time.monotonic() - self.started,
            upstream_seconds=self.upstream_seconds,
        )

    def end(
        self,
        result: BrokerResult,
        *,
        outcome: str,
        decision: str,
        reason: str,
        extra: dict[str, Any] | None = None,
        log_message: str,
    ) -> BrokerResult:
        """The call ends here before going upstream: write its last event and answer
        `result`, or answer 503 when the event could not be
        written. Every such ending goes through this one step."""
        try:
            self.record(outcome=outcome, decision=decision, reason=reason, extra=extra, last=True)
        except AUDIT_FAILURES:
            return audit_unavailable(log_message)
        return result

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
        return self.end(
            result,
            outcome=outcome,
            decision=decision,
            reason=result.message,
            extra=extra,
            log_message="audit write failed for a refused call",
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
