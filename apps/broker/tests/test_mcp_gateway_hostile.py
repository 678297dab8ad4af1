"""Hostile upstream MCP servers get bounded, clear errors: a server that answers too
slowly, with a 50 MB body, with malformed JSON-RPC, with something that is not JSON,
or that lists 10,000 tools. The agent gets a tool error that says which, never a
500; the web thread is back within the deadline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client as TestClient
from mcp import Client
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from apps.audit.models import AuditEvent
from apps.broker.tests.test_mcp import with_client
from apps.broker.tests.test_mcp_gateway import agent_with, approve
from apps.connections.gateway.services import HttpServer, mcp_connection_create
from apps.connections.gateway.tools import GatewayProblem, mcp_tools_refresh
from apps.connections.tests.hostile_mcp import HostileMcpServer
from apps.organizations.models import Organization


@pytest.fixture
def hostile() -> Iterator[HostileMcpServer]:
    server = HostileMcpServer()
    yield server
    server.close()


@pytest.mark.usefixtures("transactional_db")
@pytest.mark.parametrize(
    ("mode", "code", "words"),
    [
        ("slow", "upstream_timeout", "did not answer within 2 s"),
        ("huge", "upstream_response_too_large", "larger than Grantry passes on"),
        ("malformed", "upstream_protocol_error", "malformed MCP message"),
        ("not_json", "upstream_protocol_error", "not MCP JSON"),
    ],
)
def test_a_hostile_answer_is_a_bounded_clear_error(
    org: Organization,
    hostile: HostileMcpServer,
    live_server: LiveServer,
    settings: Settings,
    mode: str,
    code: str,
    words: str,
) -> None:
    settings.GRANTRY_MCP_CALL_TIMEOUT = 2
    connection, _ = mcp_connection_create(
        organization=org, name="hostile", server=HttpServer(url=hostile.url)
    )
    approve(connection, "lookup")
    agent = agent_with(org, connection, {"action_pattern": "lookup"})
    hostile.mode = mode

    async def body(client: Client) -> Any:
        started = time.monotonic()
        result = await client.call_tool("hostile__lookup", {"q": "x"})
        return result, time.monotonic() - started

    result, elapsed = with_client(f"{live_server.url}/mcp", agent.raw, "auto", body)
    assert result.is_error is True
    assert result.content[0].text.startswith(f"{code}: ")
    assert words in result.content[0].text
    assert "127.0.0.1" in result.content[0].text  # the host, never the URL
    assert elapsed < 10
    assert hostile.calls == 1
    outcome = AuditEvent.objects.get(action="broker.execute", connection_id=connection.pk)
    assert outcome.metadata["error"] == code


@pytest.mark.usefixtures("transactional_db")
def test_ten_thousand_tools_are_refused_with_the_reason(
    org: Organization, hostile: HostileMcpServer, admin: Any
) -> None:
    hostile.mode = "many_tools"
    started = time.monotonic()
    with pytest.raises(GatewayProblem) as refused:
        mcp_connection_create(organization=org, name="many", server=HttpServer(url=hostile.url))
    assert refused.value.code == "too_many_tools"
    assert "lists more than 500 tools" in refused.value.message
    assert time.monotonic() - started < 30
    # The dashboard says so too (400 with the reason, nothing saved, no 500).
    browser = TestClient()
    browser.force_login(admin)
    page = browser.post(
        "/o/acme/connections/mcp/add/",
        {"name": "many", "transport": "http", "url": hostile.url, "auth": "none"},
    )
    assert page.status_code == 400
    assert b"lists more than 500 tools" in page.content
    # A server that grows to 10,000 tools later: its listing fails, its pins stay.
    hostile.mode = "ok"
    connection, _ = mcp_connection_create(
        organization=org, name="grows", server=HttpServer(url=hostile.url)
    )
    hostile.mode = "many_tools"
    with pytest.raises(GatewayProblem):
        mcp_tools_refresh(connection_id=connection.pk)
    connection.mcp_server.refresh_from_db()
    assert "lists more than 500 tools" in connection.mcp_server.last_error


@pytest.mark.usefixtures("transactional_db")
def test_tools_grantry_cannot_store_are_left_out_not_a_500(
    org: Organization, hostile: HostileMcpServer
) -> None:
    hostile.mode = "unstorable"
    _, report = mcp_connection_create(
        organization=org, name="odd", server=HttpServer(url=hostile.url)
    )
    assert report.new == ["lookup"]
    assert sorted(report.skipped) == ["bad name\n", "nul"]
    assert report.total == 3
