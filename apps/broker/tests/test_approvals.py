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
