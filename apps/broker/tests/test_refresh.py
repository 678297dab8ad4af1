"""Refresh on demand through the broker, against the real Sandbox OAuth server and
API (live_server): an expired access token is refreshed once, even when several
agent calls arrive together, and the upstream sees only the fresh token."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import httpx
from django.test import Client
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.broker.tests.conftest import make_agent
from apps.connections.models import Connection, ConnectionStatus

# The connections app's fixtures: a real OAuth connection to the Sandbox.
from apps.connections.tests.conftest import (  # noqa: F401 - pytest finds fixtures by name
    Sandbox,
    admin_client,
    connected,
    sandbox,
)

RULES = [{"kind": "action", "provider_key": "sandbox", "action_pattern": "sandbox.list_projects"}]


def _expire(connection: Connection) -> None:
    Connection.objects.filter(pk=connection.pk).update(
        expires_at=timezone.now() - timedelta(minutes=5)
    )


def test_expired_token_is_refreshed_on_demand(connected: Connection, client: Client) -> None:  # noqa: F811 - the imported fixture
    agent = make_agent(connected.organization, rules=RULES, connection=connected)
    old_access = connected.access_token
    _expire(connected)

    response = client.post(
        "/api/v1/actions/sandbox.list_projects/execute",
        json.dumps({"input": {}}),
        content_type="application/json",
        **agent.headers,
    )

    assert response.status_code == 200, response.content
    assert response.json()["status"] == 200  # the Sandbox accepted the refreshed token
    fresh = Connection.objects.get(pk=connected.pk)
    assert fresh.access_token != old_access
    assert fresh.expires_at > timezone.now()
    assert fresh.status == ConnectionStatus.ACTIVE
    assert (
        AuditEvent.objects.filter(action="connection.refreshed", connection_id=connected.pk).count()
        == 1
    )


def test_concurrent_calls_refresh_once(connected: Connection, sandbox: Sandbox) -> None:  # noqa: F811 - the imported fixtures
    agent = make_agent(connected.organization, rules=RULES, connection=connected)
    _expire(connected)
    url = f"{sandbox.base_url}/api/v1/actions/sandbox.list_projects/execute"
    results: list[tuple[int, int | None]] = []
    barrier = threading.Barrier(4)

    def call() -> None:
        barrier.wait()
        response = httpx.post(
            url, json={"input": {}}, timeout=30, headers={"Authorization": f"Bearer {agent.raw}"}
        )
        results.append((response.status_code, response.json().get("status")))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert results == [(200, 200)] * 4
    assert (
        AuditEvent.objects.filter(action="connection.refreshed", connection_id=connected.pk).count()
        == 1
    )


def test_a_token_endpoint_that_fails_just_now_is_a_503_not_a_500(
    connected: Connection,  # noqa: F811 - the connections app's fixture, imported above
    client: Client,
    settings: Any,
) -> None:
    """The chaos and cluster runs found a 500 here: a refresh whose token endpoint did
    not answer raised through the broker. It is 503 `refresh_unavailable` with
    Retry-After, audited, and nothing goes upstream."""
    agent = make_agent(connected.organization, rules=RULES, connection=connected)
    _expire(connected)
    settings.GRANTRY_PROVIDER_URLS = {"sandbox.token_url": "http://127.0.0.1:9/o/token/"}
    response = client.post(
        "/api/v1/actions/sandbox.list_projects/execute",
        json.dumps({"input": {}}),
        content_type="application/json",
        **agent.headers,
    )
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "refresh_unavailable"
    assert response["Retry-After"] == "30"
    assert connected.access_token not in response.content.decode()
    outcome = AuditEvent.objects.filter(action="broker.execute").latest("id")
    assert outcome.metadata["error"] == "refresh_unavailable"
