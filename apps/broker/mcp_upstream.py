"""A tool of an upstream MCP server as a target of the one pipeline (`pipeline.run`).

An agent calls `<connection>__<tool>` on `/mcp` (or `<tool>` on the connection's own
`/mcp/c/<connection>`). The call goes through every step an action call does:

* **decide**: the role's MCP rules for that connection and tool (`evaluate`, deny by
  default; the tool's class is its approved readOnlyHint); a denial names the rule
  an admin would add and nothing reaches the upstream;
* **prepare**: the tool must be pinned: approved, and the server's current
  definition the approved one (`gateway.tools.mcp_tool_for_call`, which reads the
  server's tool list again when Grantry's view is older than
  GRANTRY_MCP_TOOLS_MAX_AGE: tools/list has no side effects upstream);
* **approve, admit, attempt**: unchanged (the approval is bound to the tool's full
  name, the connection and the input digest, like an action's);
* **credential and upstream**: the send window (apps/workers/fence.py) is checked
  before the call is handed to the MCP client and again once its session is ready,
  just before the SDK writes the call (the SDK's session writes the request on its
  own task, so the write itself is not bounded by the window);
  `gateway.tools.upstream_for` (custody: the token,
  refreshed under the row lock, or the stdio server's environment) and
  `gateway.client.call_tool` (the `mcp` SDK through the egress guard or the
  sandbox); the server's `content`, `structuredContent` and `isError` come back
  unchanged, its failures as one bounded error;
* **outcome**: one audit event, `isError` recorded as a failure.

Grantry checks its own rules (constraints) on the input; the tool's input schema is
the upstream's to enforce (a schema from outside is never run here: its patterns
could take a web worker's CPU).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from apps.audit.models import Decision, Outcome
from apps.broker.pipeline import REAUTH_MESSAGE, ActionTarget, AgentCall, Chosen
from apps.broker.results import BrokerResult, fail, refresh_unavailable
from apps.connections import custody
from apps.connections.gateway import client
from apps.connections.gateway.client import UpstreamError
from apps.connections.gateway.tools import GatewayProblem, mcp_tool_for_call, upstream_for
from apps.connections.mcp_models import MCP_PROVIDER_KEY, McpTool
from apps.connections.selectors import connections_for_call
from apps.connections.services import RefreshTemporarilyFailed
from apps.core.db import connections_release
from apps.policies.evaluate import Call as PolicyCall
from apps.policies.evaluate import evaluate
from apps.policies.selectors import role_rules
from apps.workers.auth import AgentContext

SEPARATOR = "__"  # <connection>__<tool>: an MCP connection's name never holds it


def split_name(name: str) -> tuple[str, str] | None:
    """(connection, tool) of a namespaced tool name, or None for any other name (a
    catalog action's `provider.action` has a dot before any '__')."""
    connection, sep, tool = name.partition(SEPARATOR)
    if not sep or not connection or not tool or "." in connection:
        return None
    return connection, tool


@dataclass
class McpToolTarget(ActionTarget):
    """A tool of one MCP connection; `action_name` is its namespaced name, which the
    audit trail and approvals show (an approval binds it like an action's)."""

    connection_name: str = ""
    tool: str = ""
    pinned: McpTool | None = None  # the tool's row as `decide` read it

    @classmethod
    def named(cls, connection_name: str, tool: str, arguments: dict[str, Any]) -> McpToolTarget:
        return cls(
            action_name=f"{connection_name}{SEPARATOR}{tool}",
            connection_ref=connection_name,
            input=arguments,
            connection_name=connection_name,
            tool=tool,
        )

    def audit_fields(self, ctx: AgentContext) -> dict[str, Any]:
        return {**super().audit_fields(ctx), "mcp_tool": self.tool[:128]}

    def decide(self, call: AgentCall) -> Chosen | BrokerResult:
        ctx = call.ctx
        call.provider_key = MCP_PROVIDER_KEY
        found = connections_for_call(
            organization_id=ctx.organization_id,
            provider_key=MCP_PROVIDER_KEY,
            ref=self.connection_name,
        )
        if not found:
            return call.refuse(
                fail(
                    404,
                    "unknown_tool",
                    f"There is no tool {self.action_name!r}: this organization has no MCP "
                    f"connection {self.connection_name!r}. tools/list lists yours.",
                )
            )
        connection = call.connection = found[0]
        pinned = self.pinned = McpTool.objects.filter(
            connection_id=connection.pk, name=self.tool
        ).first()
        read_only = pinned.read_only if pinned is not None else False
        call.metadata["tool_class"] = "read" if read_only else "write"
        decision = evaluate(
            role_rules(ctx.role_id, ctx.rules_version),
            PolicyCall.for_mcp_tool(
                tool=self.tool,
                read_only=read_only,
                connection_id=connection.pk,
                connection_name=connection.name,
                input=self.input,
                role_name=ctx.role_name,
            ),
        )
        if not decision.allowed and not decision.approval_required:
            return call.refuse(
                fail(
                    403,
                    "denied",
                    decision.reason,
                    tool=self.action_name,
                    connection=connection.name,
                )
            )
        return Chosen(connection, decision)

    def prepare(self, call: AgentCall, chosen: Chosen) -> McpSend | BrokerResult:  # type: ignore[override]
        connection = chosen.connection
        try:
            mcp_tool_for_call(connection, self.tool, read=self.pinned)
        except custody.NeedsReauth:
            return call.refuse(
                fail(409, "needs_reauth", REAUTH_MESSAGE.format(name=connection.name)),
                outcome=Outcome.FAILURE,
                decision=Decision.ALLOWED,
            )
        except RefreshTemporarilyFailed as exc:
            return call.refuse(
                refresh_unavailable(connection.name, str(exc)),
                outcome=Outcome.ERROR,
                decision=Decision.ALLOWED,
            )
        except GatewayProblem as problem:
            return call.refuse(
                fail(problem.status, problem.code, problem.message, connection=connection.name),
                outcome=Outcome.FAILURE if problem.status < 500 else Outcome.ERROR,
                decision=Decision.ALLOWED,
            )
        return McpSend(tool=self.tool, arguments=self.input)


@dataclass(frozen=True)
class McpSend:
    """The upstream step of a tool call (`pipeline.run` calls `send`)."""

    tool: str
    arguments: dict[str, Any]

    def send(self, call: AgentCall) -> BrokerResult:
        connection = call.connection
        assert connection is not None
        try:
            upstream = upstream_for(connection, connection.mcp_server)
        except custody.NeedsReauth:
            return fail(409, "needs_reauth", REAUTH_MESSAGE.format(name=connection.name))
        except RefreshTemporarilyFailed as exc:
            return refresh_unavailable(connection.name, str(exc))
        except GatewayProblem as problem:
            return fail(problem.status, problem.code, problem.message, connection=connection.name)
        connections_release(only_pooled=True)  # none held while the server answers
        if call.send_by is not None and time.monotonic() >= call.send_by:
            # The send window (apps/workers/fence.py) ended before the call could go.
            return fail(
                502,
                "send_window_closed",
                f"Nothing was sent to {connection.name}: the tool call could not be sent "
                "within the send window after its attempt was recorded. Retry.",
                connection=connection.name,
            )
        try:
            result = client.call_tool(upstream, self.tool, self.arguments, send_by=call.send_by)
        except UpstreamError as error:
            extra = {"rpc_code": error.rpc_code} if error.rpc_code is not None else {}
            return fail(
                error.status, error.code, error.message, connection=connection.name, **extra
            )
        return BrokerResult(upstream_status=200, body=result, is_json=True, mcp_result=result)
