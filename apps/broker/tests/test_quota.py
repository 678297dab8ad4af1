"""A rule's per-worker quota on the broker path: counted after the rate limit, refused
with 429 quota_exceeded and Retry-After before anything goes upstream."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.audit.models import AuditEvent
from apps.broker.tests.conftest import make_agent
from apps.broker.tests.upstream import RecordingUpstream
from apps.organizations.models import Organization
from apps.workers.services import token_mint, worker_create
from conftest import ManualClock

pytestmark = pytest.mark.django_db

EXECUTE = "/api/v1/actions/{}/execute"
# Quotas count in fixed UTC windows; the clock is pinned 30 s into a minute so the three
# calls share one window and the Retry-After is exact.
PINNED_NOW = 1_800_000_030.0
QUOTA_RULE = {
    "kind": "action",
    "provider_key": "sandbox",
    "action_pattern": "sandbox.list_projects",
    "quota": {"limit": 2, "per": "minute"},
}


@pytest.fixture
def pinned_clock(ratelimit_clock: ManualClock) -> None:
    ratelimit_clock.now = PINNED_NOW


def execute(client: Any, raw_token: Any) -> Any:
    return client.post(
        EXECUTE.format("sandbox.list_projects"),
        json.dumps({"input": {}}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw_token}",
    )


@pytest.mark.usefixtures("pinned_clock")
def test_a_quota_of_two_per_minute_refuses_the_third_call(
    client: Client, org: Organization, upstream: RecordingUpstream
) -> None:
    agent = make_agent(org, rules=[QUOTA_RULE])

    first, second = execute(client, agent.raw), execute(client, agent.raw)
    assert (first.status_code, second.status_code) == (200, 200), second.content
    assert len(upstream.requests) == 2

    third = execute(client, agent.raw)
    assert third.status_code == 429, third.content
    assert third["Retry-After"] == "30"
    error = third.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert "at most 2 calls per minute per worker" in error["message"]
    assert error["details"]["retry_after"] == 30
    # Nothing went upstream for the third call, and its refusal is audited.
    assert len(upstream.requests) == 2
    refused = AuditEvent.objects.filter(action="broker.execute").order_by("id").last()
    assert refused.decision == "denied"
    assert refused.reason == error["message"]


@pytest.mark.usefixtures("pinned_clock")
def test_the_quota_counts_each_worker_separately(
    client: Client, org: Organization, upstream: RecordingUpstream
) -> None:
    agent = make_agent(org, rules=[QUOTA_RULE])
    other = worker_create(organization=org, name="other-bot", default_role=agent.role)
    _, other_raw = token_mint(worker=other)

    assert [execute(client, agent.raw).status_code for _ in range(3)] == [200, 200, 429]
    # Same rule, another worker: its own two calls.
    assert [execute(client, other_raw).status_code for _ in range(3)] == [200, 200, 429]
    assert len(upstream.requests) == 4


@pytest.mark.usefixtures("pinned_clock")
def test_an_approved_call_counts_against_the_approval_rules_quota(
    client: Client,
    org: Organization,
    owner: User,
    member: User,
    admin: User,
    upstream: RecordingUpstream,
) -> None:
    from apps.approvals.models import Approval
    from apps.approvals.services import approval_decide
    from apps.approvals.tests.conftest import approval_rules, make_gated_agent
    from apps.policies.services import role_update

    gated = make_gated_agent(org, creator=owner, owner=member)
    rules = approval_rules(gated.connection)
    rules[1]["quota"] = {"limit": 1, "per": "minute"}
    role_update(role=gated.role, rules=rules)

    def approved_call(task_id: Any) -> Any:
        url = "/api/v1/actions/sandbox.delete_task/execute"
        body = {"input": {"task_id": task_id}}
        asked = client.post(url, json.dumps(body), "application/json", **gated.headers)
        assert asked.status_code == 202, asked.content
        approval_id = asked.json()["approval"]["id"]
        approval = Approval.objects.get(public_id=approval_id)
        approval_decide(approval=approval, actor=admin, approve=True)
        body["approval"] = approval_id
        return client.post(url, json.dumps(body), "application/json", **gated.headers)

    assert approved_call(42).status_code == 200
    over = approved_call(43)
    assert over.status_code == 429, over.content
    assert over.json()["error"]["code"] == "quota_exceeded"
    assert over["Retry-After"] == "30"
    assert len(upstream.requests) == 1
