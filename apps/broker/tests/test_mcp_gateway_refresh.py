"""An upstream MCP server's OAuth token is refreshed once, whoever needs it: another
Grantry's /mcp (another organization on the same live server) is the upstream, its
own authorization server (django-oauth-toolkit with Grantry's validator: refresh
tokens that rotate, tokens bound to the /mcp resource) issues the tokens. Grantry
connects as its OAuth client (RFC 9728 discovery, dynamic registration, PKCE, the
resource), then 20 agent calls arrive together with the access token expired: one
refresh request, every call answered, with the fresh token."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client as TestClient
from django.utils import timezone
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from apps.audit.models import AuditEvent
from apps.broker.tests.conftest import make_agent
from apps.broker.tests.test_mcp_gateway import agent_with, approve
from apps.broker.tests.upstream import RecordingUpstream
from apps.connections.gateway.tools import mcp_tools_refresh
from apps.connections.models import Connection, ConnectionStatus
from apps.connections.tests.test_gateway_oauth import add_with_oauth
from apps.mcpauth.tests.oauth import consent, redirect_params
from apps.organizations.models import Organization
from tests.factories import MembershipFactory

RACERS = 20


def call_tool(url: str, token: str, name: str) -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name}}
    return httpx.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)


@pytest.mark.usefixtures("transactional_db")
def test_twenty_racers_cause_one_refresh_of_an_upstream_token(
    org: Organization,
    other_org: Organization,
    admin: User,
    live_server: LiveServer,
    settings: Settings,
    upstream: RecordingUpstream,
) -> None:
    settings.GRANTRY_BASE_URL = live_server.url
    # The upstream: Globex's Grantry /mcp, with a worker allowed to list projects.
    MembershipFactory(organization=other_org, user=admin, role="admin")
    upstream_worker = make_agent(other_org, name="upstream-bot", connection_name="globex-sbx")
    browser = TestClient()
    browser.force_login(admin)

    authorize = add_with_oauth(browser, f"{live_server.url}/mcp", name="globex")
    parts = urlsplit(authorize)
    assert parts.path == "/oauth/authorize/"
    # The admin consents at Globex's authorization page, for Globex's worker.
    url = f"{parts.path}?{parts.query}&org=globex"
    answer = consent(browser, url, worker=upstream_worker.worker)
    callback = redirect_params(answer)
    assert callback["iss"] == f"{live_server.url}/oauth"  # checked against the discovered issuer
    done = browser.get(f"/oauth/callback/?{urlsplit(answer['Location']).query}")
    assert done.status_code == 302, done.content[:2000]
    connection = Connection.objects.get(organization=org, name="globex")
    assert connection.status == ConnectionStatus.ACTIVE
    assert connection.has_refresh_token
    mcp_tools_refresh(connection_id=connection.pk)
    approve(connection, "sandbox.list_projects")
    agent = agent_with(org, connection, {"action_pattern": "sandbox.list_projects"})

    old_token = connection.access_token
    Connection.objects.filter(pk=connection.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    answers: list[Any] = []
    barrier = threading.Barrier(RACERS)

    def racer() -> None:
        barrier.wait()
        response = call_tool(f"{live_server.url}/mcp", agent.raw, "globex__sandbox.list_projects")
        answers.append(response.json()["result"])

    threads = [threading.Thread(target=racer) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert len(answers) == RACERS
    assert all(a["isError"] is False for a in answers), answers[0]
    assert all("Apollo" in a["content"][0]["text"] for a in answers)
    refreshed = AuditEvent.objects.filter(
        action="connection.refreshed", connection_id=connection.pk
    )
    assert refreshed.count() == 1
    fresh = Connection.objects.get(pk=connection.pk)
    assert fresh.access_token != old_token
    assert fresh.expires_at > timezone.now()
    # The worker token never went upstream: Globex's Sandbox saw Globex's key only.
    assert all(agent.raw not in str(r.headers) for r in upstream.requests)
