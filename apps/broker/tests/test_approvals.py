"""Approval as one step of the broker pipeline, end to end over the agent API and
MCP, against a local upstream that counts calls (issue 14)."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client
from pytest_django.live_server_helper import LiveServer

from apps.approvals.models import Approval
from apps.approvals.services import approval_decide
from apps.approvals.tests.conftest import INPUT, GatedAgent, make_gated_agent
from apps.audit.models import AuditEvent
from apps.broker.tests.upstream import RecordingUpstream
from apps.organizations.models import Organization

EXECUTE = "/api/v1/actions/sandbox.delete_task/execute"


def _execute(client: Any, agent: Any, body: Any) -> Any:
    return client.post(EXECUTE, json.dumps(body), content_type="application/json", **agent.headers)


@pytest.fixture
def gated(
    org: Organization,
    owner: User,
    member: User,
    admin: User,  # noqa: ARG001 - set up first, for its side effect
    upstream: RecordingUpstream,  # noqa: ARG001 - set up first, for its side effect
) -> GatedAgent:
    return make_gated_agent(org, creator=owner, owner=member)


def test_ask_approve_execute_once(
    client: Client, gated: GatedAgent, admin: User, upstream: RecordingUpstream
) -> None:
    first = _execute(client, gated, {"input": INPUT, "reason": "cleanup of a stale task"})
    assert first.status_code == 202, first.content
    body = first.json()
    approval_id = body["approval"]["id"]
    assert first["Retry-After"]
    assert first["Location"].endswith(f"/api/v1/approvals/{approval_id}")
    assert upstream.requests == []
    # Still pending: asking again is the same request, and nothing goes upstream.
    again = _execute(client, gated, {"input": INPUT, "approval": approval_id})
    assert again.status_code == 202
    assert again.json()["approval"]["id"] == approval_id
    assert upstream.requests == []

    approval = Approval.objects.get(public_id=approval_id)
    approval_decide(approval=approval, actor=admin, approve=True, comment="ok")

    other_input = _execute(client, gated, {"input": {"task_id": 43}, "approval": approval_id})
    assert other_input.status_code == 403
    assert "input differs from what was approved" in other_input.json()["error"]["message"].lower()
    assert upstream.requests == []

    done = _execute(client, gated, {"input": INPUT, "approval": approval_id})
    assert done.status_code == 200, done.content
    assert len(upstream.requests) == 1
    assert upstream.requests[0].method == "DELETE"
    replay = _execute(client, gated, {"input": INPUT, "approval": approval_id})
    assert replay.status_code == 409
    assert replay.json()["error"]["code"] == "approval_used"
    assert len(upstream.requests) == 1
    executed = AuditEvent.objects.filter(action="broker.execute.attempt").get()
    assert executed.metadata["approval_id"] == approval_id


@pytest.mark.usefixtures("upstream")
def test_a_dry_run_says_approval_is_needed_without_asking(
    client: Client, gated: GatedAgent
) -> None:
    response = client.post(
        "/api/v1/actions/sandbox.delete_task/check",
        json.dumps({"input": INPUT}),
        content_type="application/json",
        **gated.headers,
    )
    assert response.status_code == 200
    assert response.json()["decision"] == "approval_required"
    assert not Approval.objects.exists()


def test_a_rules_change_voids_the_approval(
    client: Client, gated: GatedAgent, admin: User, upstream: RecordingUpstream
) -> None:
    from apps.policies.services import role_update

    approval_id = _execute(client, gated, {"input": INPUT}).json()["approval"]["id"]
    approval_decide(approval=Approval.objects.get(public_id=approval_id), actor=admin, approve=True)
    from apps.approvals.tests.conftest import approval_rules

    extra = {"kind": "action", "provider_key": "sandbox", "action_pattern": "sandbox.list_tasks"}
    role_update(role=gated.role, rules=[*approval_rules(gated.connection), extra])
    response = _execute(client, gated, {"input": INPUT, "approval": approval_id})
    assert response.status_code == 409, response.content
    assert response.json()["error"]["code"] == "approval_void"
    assert upstream.requests == []


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_executions_of_one_approval_make_one_upstream_call(
    live_server: LiveServer,
    org: Organization,
    owner: User,
    member: User,
    admin: User,
    upstream: RecordingUpstream,
) -> None:
    gated = make_gated_agent(org, creator=owner, owner=member)
    url = f"{live_server.url}{EXECUTE}"
    headers = {"Authorization": f"Bearer {gated.raw}"}
    first = httpx.post(url, json={"input": INPUT}, headers=headers, timeout=30)
    approval_id = first.json()["approval"]["id"]
    approval_decide(approval=Approval.objects.get(public_id=approval_id), actor=admin, approve=True)
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def send() -> None:
        barrier.wait()
        response = httpx.post(
            url, json={"input": INPUT, "approval": approval_id}, headers=headers, timeout=30
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    connections.close_all()
    assert sorted(statuses) == [200, 409]
    assert len(upstream.requests) == 1


@pytest.mark.django_db(transaction=True)
def test_mcp_tool_call_is_pending_then_runs_after_approval(
    live_server: LiveServer,
    org: Organization,
    owner: User,
    member: User,
    admin: User,
    upstream: RecordingUpstream,
) -> None:
    from apps.broker.tests.test_mcp import with_client

    gated = make_gated_agent(org, creator=owner, owner=member)
    url = f"{live_server.url}/mcp"

    async def ask(client: Any) -> Any:
        return await client.call_tool("sandbox.delete_task", dict(INPUT))

    pending = with_client(url, gated.raw, "auto", ask)
    assert not pending.is_error
    approval_id = pending.structured_content["approval"]["id"]
    assert "Pending approval" in pending.content[0].text
    assert upstream.requests == []
    approval_decide(approval=Approval.objects.get(public_id=approval_id), actor=admin, approve=True)

    async def run(client: Any) -> Any:
        return await client.call_tool("sandbox.delete_task", {**INPUT, "_approval": approval_id})

    done = with_client(url, gated.raw, "auto", run)
    assert not done.is_error, done.content
    assert len(upstream.requests) == 1


def test_an_approval_id_on_a_call_that_needs_none_is_refused(
    client: Client, gated: GatedAgent, upstream: RecordingUpstream
) -> None:
    """Issue 22 item 4: the documented 403 approval_call_mismatch, not a silent run."""
    approval = gated.request()
    response = client.post(
        "/api/v1/actions/sandbox.list_projects/execute",
        json.dumps({"input": {}, "approval": approval.public_id}),
        content_type="application/json",
        **gated.headers,
    )
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == "approval_call_mismatch"
    assert "needs no approval" in error["message"]
    assert upstream.requests == []
    refused = AuditEvent.objects.filter(action="broker.execute").order_by("id").last()
    assert refused.decision == "denied"
    assert refused.metadata["approval_id"] == approval.public_id


def test_a_refusal_after_approval_does_not_spend_it(
    client: Client,
    org: Organization,
    owner: User,
    member: User,
    admin: User,
    upstream: RecordingUpstream,
    ratelimit_clock: Any,
) -> None:
    """Issue 22 item 2: a quota refusal after approval sends nothing upstream and leaves
    the approval usable; only the call that goes upstream spends it."""
    from apps.approvals.tests.conftest import approval_rules
    from apps.policies.services import role_update

    gated = make_gated_agent(org, creator=owner, owner=member)
    rules = approval_rules(gated.connection)
    rules[1]["quota"] = {"limit": 1, "per": "minute"}
    role_update(role=gated.role, rules=rules)

    def approved(task_id: int) -> str:
        first = _execute(client, gated, {"input": {"task_id": task_id}})
        assert first.status_code == 202, first.content
        approval_id = first.json()["approval"]["id"]
        approval = Approval.objects.get(public_id=approval_id)
        approval_decide(approval=approval, actor=admin, approve=True)
        return approval_id

    spent = approved(41)
    assert _execute(client, gated, {"input": {"task_id": 41}, "approval": spent}).status_code == 200
    kept = approved(42)
    refused = _execute(client, gated, {"input": {"task_id": 42}, "approval": kept})
    assert refused.status_code == 429, refused.content
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert len(upstream.requests) == 1
    assert Approval.objects.get(public_id=kept).status == "approved"
    assert not AuditEvent.objects.filter(
        action="approval.executed", metadata__approval_id=kept
    ).exists()
    trail = AuditEvent.objects.filter(action="broker.execute").order_by("id").last()
    assert trail.decision == "denied"
    assert trail.metadata["approval_id"] == kept
    assert trail.metadata["approval"] == "not_spent"

    ratelimit_clock.advance(60)  # the quota's next window
    done = _execute(client, gated, {"input": {"task_id": 42}, "approval": kept})
    assert done.status_code == 200, done.content
    assert len(upstream.requests) == 2
    assert Approval.objects.get(public_id=kept).status == "executed"


def _with_elicitation(url: str, token: str, body: Any, answer: Any) -> Any:
    """The official client in 2026-07-28 mode with an elicitation callback, so it
    declares elicitation and drives `input_required` rounds itself."""
    import anyio
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def callback(context: Any, params: Any) -> Any:  # noqa: ARG001 - the SDK's signature
        return await answer(params)

    async def main() -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers) as hc,
            Client(
                streamable_http_client(url, http_client=hc),
                mode="auto",
                elicitation_callback=callback,
            ) as client,
        ):
            return await body(client)

    return anyio.run(main)


@pytest.mark.django_db(transaction=True)
def test_mcp_asks_for_the_approval_with_input_required_where_the_client_supports_it(
    live_server: LiveServer,
    org: Organization,
    owner: User,
    member: User,
    admin: User,
    upstream: RecordingUpstream,
) -> None:
    """Issue 22 item 7: MCP 2026-07-28 multi-round-trip requests. The client shows the
    elicitation (URL mode: the approval's page); a person approves; the client's retry
    carries the answer and the signed state, and the call runs once."""
    import anyio

    gated = make_gated_agent(org, creator=owner, owner=member)
    asked: list[Any] = []

    def approve_it() -> None:
        approval = Approval.objects.get()
        approval_decide(approval=approval, actor=admin, approve=True)
        connections.close_all()

    async def answer(params: Any) -> Any:
        import mcp_types

        asked.append(params)
        await anyio.to_thread.run_sync(approve_it)  # the person, on Grantry's page
        return mcp_types.ElicitResult(action="accept")

    async def call(client: Any) -> Any:
        return await client.call_tool("sandbox.delete_task", dict(INPUT))

    done = _with_elicitation(f"{live_server.url}/mcp", gated.raw, call, answer)
    assert not done.is_error, done.content
    assert len(asked) == 1
    approval = Approval.objects.get()
    assert asked[0].mode == "url"
    assert asked[0].url.endswith(f"/approvals/{approval.public_id}/")
    assert approval.public_id in asked[0].message
    assert approval.status == "executed"
    assert len(upstream.requests) == 1


@pytest.mark.django_db(transaction=True)
def test_declining_the_elicitation_leaves_the_approval_pending(
    live_server: LiveServer,
    org: Organization,
    owner: User,
    member: User,
    admin: User,  # noqa: ARG001 - set up first, for its side effect
    upstream: RecordingUpstream,
) -> None:
    import mcp_types

    gated = make_gated_agent(org, creator=owner, owner=member)

    async def answer(params: Any) -> Any:  # noqa: ARG001 - the person says no
        return mcp_types.ElicitResult(action="decline")

    async def call(client: Any) -> Any:
        return await client.call_tool("sandbox.delete_task", dict(INPUT))

    result = _with_elicitation(f"{live_server.url}/mcp", gated.raw, call, answer)
    approval = Approval.objects.get()
    assert not result.is_error
    assert "Stopped waiting" in result.content[0].text
    assert approval.public_id in result.content[0].text
    assert approval.status == "pending"
    assert upstream.requests == []


@pytest.mark.usefixtures("upstream")
def test_a_forged_request_state_is_refused(client: Client, gated: GatedAgent) -> None:
    from apps.broker.tests.test_mcp import META, MODERN

    def tools_call(extra: dict[str, Any], capabilities: dict[str, Any]) -> Any:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {
                "name": "sandbox.delete_task",
                "arguments": dict(INPUT),
                "_meta": {**META, "io.modelcontextprotocol/clientCapabilities": capabilities},
                **extra,
            },
        }
        return client.post(
            "/mcp",
            json.dumps(body),
            content_type="application/json",
            HTTP_MCP_PROTOCOL_VERSION=MODERN,
            HTTP_MCP_METHOD="tools/call",
            HTTP_MCP_NAME="sandbox.delete_task",
            **gated.headers,
        )

    first = tools_call({}, {"elicitation": {}}).json()["result"]
    assert first["resultType"] == "input_required"
    request = first["inputRequests"]["grantry_approval"]
    assert request["method"] == "elicitation/create"
    assert request["params"]["mode"] == "form"  # the client declared form mode only
    accept = {"grantry_approval": {"action": "accept"}}
    state = first["requestState"]
    forged = tools_call({"requestState": state + "x", "inputResponses": accept}, {})
    assert forged.status_code == 400
    assert forged.json()["error"]["code"] == -32602
    # The state is bound to the call: with other arguments it is refused too.
    body = tools_call({"requestState": state, "inputResponses": accept}, {"elicitation": {}})
    assert body.status_code == 200  # the same call: still pending, so asked again
    assert body.json()["result"]["resultType"] == "input_required"
    approval = Approval.objects.get()
    assert approval.status == "pending"

    def other_call() -> Any:
        raw = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {
                "name": "sandbox.delete_task",
                "arguments": {"task_id": 43},
                "_meta": META,
                "requestState": state,
                "inputResponses": accept,
            },
        }
        return client.post(
            "/mcp",
            json.dumps(raw),
            content_type="application/json",
            HTTP_MCP_PROTOCOL_VERSION=MODERN,
            HTTP_MCP_METHOD="tools/call",
            HTTP_MCP_NAME="sandbox.delete_task",
            **gated.headers,
        )

    other = other_call()
    assert other.status_code == 400
    assert other.json()["error"]["code"] == -32602
    # A client that declares no elicitation gets the text result (today's fallback).
    plain = tools_call({}, {}).json()["result"]
    assert plain["structuredContent"]["approval"]["id"] == approval.public_id
    # The text says `_approval`; so does the structured content (issue 27, #10).
    assert plain["structuredContent"]["retry_with"] == {"_approval": approval.public_id}
    assert "Pending approval" in plain["content"][0]["text"]
