"""The hot path: one agent call, from the token to the answer, as typed steps.

Execute, check (dry run), the raw proxy and MCP tool calls all run `run()`:

    resolve the connections → decide (deny by default) → validate → approve
    (rules that need a person: apps.approvals) → admit (rate limit, quota,
    connection health) → durable attempt (token re-checked) → credential →
    upstream → outcome → answer

A call's target is either an `ActionTarget` (a catalog action with JSON
input) or a `ProxyTarget` (method, path and raw body): the only two things
that differ are how a target is decided and how its request is built, and
each target type implements exactly those two steps. A tool of an upstream MCP
server (`apps/broker/mcp_upstream.py`, an `ActionTarget`) prepares a `Sender`, its
own upstream step, instead of an HTTP request.

Every call ends with exactly one audit event: a refusal, the dry run's result
or the upstream outcome. The attempt is durably committed before any upstream
byte (fail closed: 503 if it can't be written), and its statement is the fence
of exact revocation (apps/workers/fence.py): it re-checks the token after waiting
for any revocation in progress, and the request may be written only within the
send window that starts just before it. No lock, transaction or database session
state is held while the upstream answers. The outcome is committed as durably as the
attempt: a database crash loses no outcome the agent was answered with.

The modules, one concern each:

    call.py      the call (`AgentCall`, `RequestMeta`, the `Target` protocol), its audit
                 events, and the one "write the event or answer 503" step (`AgentCall.end`,
                 `audit_unavailable`); `start()` and `reject_input()` make a call
    targets.py   `ActionTarget` and `ProxyTarget`: decide and prepare
    steps.py     `run()` and the steps after the target's: approve, admit, attempt,
                 credential and upstream, outcome
    ../results.py  what the broker answers (`BrokerResult`), from the upstream's answer too
"""

from apps.broker.pipeline.call import (
    AgentCall,
    Chosen,
    RequestMeta,
    Sender,
    Target,
    Upstream,
    reject_input,
    start,
)
from apps.broker.pipeline.steps import REAUTH_MESSAGE, run
from apps.broker.pipeline.targets import ActionTarget, ProxyTarget

__all__ = [
    "REAUTH_MESSAGE",
    "ActionTarget",
    "AgentCall",
    "Chosen",
    "ProxyTarget",
    "RequestMeta",
    "Sender",
    "Target",
    "Upstream",
    "reject_input",
    "run",
    "start",
]
