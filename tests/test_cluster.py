"""Exact across nodes (issue 28): the topology of `make cluster` (scripts/cluster.py) —
two web nodes, PgBouncer in transaction pooling, Redis, a Celery worker, HAProxy — on
the test database, with calls spread over both nodes:

* a revoke through node A stops the token on node B: no upstream request after the
  revoke returns, while an agent hammers node B (the agent plays the attacker);
* a quota of 5 gives exactly 5 of 20 parallel calls over both nodes;
* a rate limit of 5 a minute gives exactly 5 of 20 parallel calls over both nodes;
* an approved call re-sent to both nodes at once runs once;
* 20 calls over both nodes that all need an OAuth refresh make one refresh;
* MCP clients (the official SDK, both protocol generations) work through the load
  balancer whichever node answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pytest_django.live_server_helper import LiveServer

from apps.accounts.services import personal_token_mint
from apps.approvals.models import Approval
from apps.approvals.services import approval_decide
from apps.approvals.tests.conftest import INPUT, make_gated_agent
from apps.audit.models import AuditEvent
from apps.broker.tests.conftest import make_agent
from apps.broker.tests.upstream import RecordingUpstream
from apps.connections.models import Connection

# The connections app's fixtures: a real OAuth connection to the Sandbox.
from apps.connections.tests.conftest import (  # noqa: F401 - fixtures pytest finds by name
    admin_client,
    connected,
    sandbox,
)
from apps.organizations.models import Organization
from scripts.cluster import Cluster, free_port
from tests.backends import database_url

EXECUTE = "/api/v1/actions/{}/execute"


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(
    django_db_setup: None,  # noqa: ARG001 - the test database must exist first
    tmp_path_factory: pytest.TempPathFactory,
    upstream: RecordingUpstream,
    live_server: LiveServer,
) -> Iterator[Cluster]:
    port = free_port()
    # The Sandbox's API is the recording upstream; its OAuth server is the Sandbox of
    # this test process (django-oauth-toolkit on the same database), as a SaaS's would
    # be: outside the cluster.
    token_url = f"{live_server.url}/sandbox/o/token/"
    topology = Cluster(
        tmp_path_factory.mktemp("cluster"),
        database_url(settings.DATABASES["default"]),
        port,
        env={
            "DJANGO_SETTINGS_MODULE": "grantry.settings_test",
            "GRANTRY_PROVIDER_URLS": f"sandbox={upstream.url},sandbox.token_url={token_url}",
            "GRANTRY_TEST_CONN_MAX_AGE": "60",  # production's persistent connections
        },
    )
    try:
        topology.start(workers=1, beats=0)
        yield topology
    finally:
        topology.stop()


def execute(base: str, token: str, action: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        base + EXECUTE.format(action),
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


def over_both_nodes(cluster: Cluster, token: str, count: int) -> list[httpx.Response]:
    """`count` sandbox.list_projects calls at once, alternating between the two nodes."""
    bases = [cluster.node(n % 2) for n in range(count)]
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(
            pool.map(
                lambda base: execute(base, token, "sandbox.list_projects", {"input": {}}), bases
            )
        )


@pytest.mark.django_db(transaction=True)
def test_a_revoke_through_node_a_stops_the_token_on_node_b(
    cluster: Cluster, upstream: RecordingUpstream, org: Organization, admin: User
) -> None:
    agent = make_agent(org)
    _, personal = personal_token_mint(user=admin, organization=org, name="revoker")
    stop = threading.Event()
    statuses: list[tuple[float, int]] = []

    def hammer() -> None:  # the agent, on node B, as fast as it can
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                answer = client.post(
                    cluster.node(1) + EXECUTE.format("sandbox.list_projects"),
                    json={"input": {}},
                    headers={"Authorization": f"Bearer {agent.raw}"},
                )
                statuses.append((time.monotonic(), answer.status_code))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        path = (
            f"/api/v1/orgs/{org.slug}/workers/{agent.worker.pk}/tokens/"
            f"{agent.token.public_id}/revoke/"
        )
        revoked = httpx.post(
            cluster.node(0) + path, headers={"Authorization": f"Bearer {personal}"}, timeout=60
        )
        returned = time.monotonic()
        sent_by_then = len(upstream.requests)
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert revoked.status_code == 200, revoked.text
    assert any(status == 200 for _, status in statuses)  # the calls went through before
    assert len(upstream.requests) == sent_by_then  # and not one after the revoke returned
    after = [status for at, status in statuses if at > returned + 0.5]
    assert after
    assert set(after) == {401}


@pytest.mark.django_db(transaction=True)
def test_a_quota_of_five_gives_five_of_twenty_parallel_calls_over_both_nodes(
    cluster: Cluster, upstream: RecordingUpstream, org: Organization
) -> None:
    rule = {
        "kind": "action",
        "provider_key": "sandbox",
        "action_pattern": "sandbox.list_projects",
        "quota": {"limit": 5, "per": "day"},
    }
    agent = make_agent(org, rules=[rule])
    before = len(upstream.requests)
    answers = over_both_nodes(cluster, agent.raw, 20)
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [200] * 5 + [429] * 15
    assert len(upstream.requests) - before == 5


@pytest.mark.django_db(transaction=True)
def test_a_rate_limit_holds_across_nodes(
    cluster: Cluster, upstream: RecordingUpstream, org: Organization
) -> None:
    rule = {
        "kind": "action",
        "provider_key": "sandbox",
        "action_pattern": "sandbox.list_projects",
        "rate_limit_per_minute": 5,
    }
    agent = make_agent(org, rules=[rule])
    # The limit counts in fixed one-minute windows: start well inside one.
    while time.time() % 60 > 45:
        time.sleep(0.5)
    before = len(upstream.requests)
    answers = over_both_nodes(cluster, agent.raw, 20)
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [200] * 5 + [429] * 15
    assert len(upstream.requests) - before == 5


@pytest.mark.django_db(transaction=True)
def test_an_approved_call_sent_to_both_nodes_at_once_runs_once(
    cluster: Cluster,
    upstream: RecordingUpstream,
    org: Organization,
    owner: User,
    member: User,
    admin: User,
) -> None:
    gated = make_gated_agent(org, creator=owner, owner=member)
    asked = execute(
        cluster.node(0), gated.raw, "sandbox.delete_task", {"input": INPUT, "reason": "x"}
    )
    assert asked.status_code == 202, asked.text
    approval_id = asked.json()["approval"]["id"]
    approval_decide(
        approval=Approval.objects.get(public_id=approval_id),
        actor=admin,
        approve=True,
        comment="ok",
    )
    before = len(upstream.requests)
    body = {"input": INPUT, "approval": approval_id}
    bases = [cluster.node(n % 2) for n in range(10)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(
            pool.map(lambda base: execute(base, gated.raw, "sandbox.delete_task", body), bases)
        )
    codes = [answer.status_code for answer in answers]
    assert codes.count(200) == 1, codes
    assert all(code in (200, 409) for code in codes), codes
    assert len(upstream.requests) - before == 1


@pytest.mark.django_db(transaction=True)
def test_twenty_calls_needing_a_refresh_from_both_nodes_refresh_once(
    cluster: Cluster,
    upstream: RecordingUpstream,
    connected: Connection,  # noqa: F811 - the connections app's fixture
) -> None:
    rules = [
        {"kind": "action", "provider_key": "sandbox", "action_pattern": "sandbox.list_projects"}
    ]
    agent = make_agent(connected.organization, rules=rules, connection=connected)
    old_access = connected.access_token
    Connection.objects.filter(pk=connected.pk).update(
        expires_at=timezone.now() - timedelta(minutes=5)
    )
    before = len(upstream.requests)
    answers = over_both_nodes(cluster, agent.raw, 20)
    assert [answer.status_code for answer in answers] == [200] * 20
    fresh = Connection.objects.get(pk=connected.pk)
    assert fresh.access_token != old_access
    refreshed = AuditEvent.objects.filter(action="connection.refreshed", connection_id=connected.pk)
    assert refreshed.count() == 1
    sent = upstream.requests[before:]
    assert len(sent) == 20
    assert {request.headers["Authorization"] for request in sent} == {
        f"Bearer {fresh.access_token}"
    }


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.django_db(transaction=True)
def test_mcp_clients_work_whichever_node_answers(
    cluster: Cluster, upstream: RecordingUpstream, org: Organization, mode: str
) -> None:
    agent = make_agent(org)
    before = len(upstream.requests)

    async def main() -> Any:
        headers = {"Authorization": f"Bearer {agent.raw}"}
        async with (
            httpx2.AsyncClient(headers=headers) as http,
            Client(
                streamable_http_client(f"{cluster.base}/mcp", http_client=http), mode=mode
            ) as client,
        ):
            results = []
            for _ in range(4):  # HAProxy's round robin: both nodes answer
                tools = (await client.list_tools()).tools
                called = await client.call_tool("sandbox.list_projects", {})
                results.append(({t.name for t in tools}, called.is_error))
            return results

    results = anyio.run(main)
    assert all(names == {"sandbox.list_projects", "sandbox.list_tasks"} for names, _ in results)
    assert all(error is False for _, error in results)
    assert len(upstream.requests) - before == 4
    by_node = {
        name: (cluster.workdir / f"{name}.log").read_text().count('"POST /mcp')
        for name in ("web1", "web2")
    }
    assert all(count > 0 for count in by_node.values()), by_node
