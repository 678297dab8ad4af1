"""The upstream side of the MCP gateway against real MCP servers from npm: adding a
server (Streamable HTTP, or stdio in the sandbox), its tools listed and pinned, a
changed definition (a real upstream upgrade at the same URL) blocked until an admin
approves it again, and every approval and change in the audit trail."""

from __future__ import annotations

import os
import time

import pytest
from pytest_django.fixtures import Settings

from apps.audit.models import AuditEvent
from apps.connections import custody
from apps.connections.gateway import client
from apps.connections.gateway.services import HttpServer, StdioServer, mcp_connection_create
from apps.connections.gateway.tools import (
    GatewayProblem,
    ToolApprovalRefused,
    mcp_tool_approve,
    mcp_tool_for_call,
    mcp_tools_refresh,
    upstream_for,
)
from apps.connections.mcp_models import McpServer, McpTool, McpToolState
from apps.connections.models import Connection
from apps.connections.tests.mcp_servers import EVERYTHING_PACKAGE, everything_http, free_port
from apps.organizations.models import Organization


def approve(connection: Connection, name: str, actor: object = None) -> McpTool:
    tool = McpTool.objects.get(connection=connection, name=name)
    return mcp_tool_approve(
        tool_id=tool.pk, organization_id=connection.organization_id, digest=tool.digest, actor=actor
    )


@pytest.mark.django_db(transaction=True)
def test_a_changed_tool_is_blocked_until_approved_again(
    org: Organization, settings: Settings
) -> None:
    settings.GRANTRY_MCP_TOOLS_MAX_AGE = 0  # read the tools again before every call
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with everything_http(port, release="2025.11.25"):
        connection, report = mcp_connection_create(
            organization=org, name="everything", server=HttpServer(url=url)
        )
        assert "echo" in report.new
        assert set(
            McpTool.objects.filter(connection=connection).values_list("state", flat=True)
        ) == {McpToolState.NEW}
        with pytest.raises(GatewayProblem) as not_yet:
            mcp_tool_for_call(connection, "echo")
        assert not_yet.value.code == "tool_not_approved"

        approved = approve(connection, "echo")
        assert (approved.approved_definition or {})["description"] == "Echoes back the input"
        assert mcp_tool_for_call(connection, "echo").is_callable()
        result = client.call_tool(
            upstream_for(connection, connection.mcp_server), "echo", {"message": "hi"}
        )
        assert result["content"] == [{"type": "text", "text": "Echo: hi"}]

    # The server at the same URL is now the next release: `echo` is described anew.
    with everything_http(port, release="2026.8.31"):
        with pytest.raises(GatewayProblem) as blocked:
            mcp_tool_for_call(connection, "echo")
        assert blocked.value.code == "tool_changed"
        tool = McpTool.objects.get(connection=connection, name="echo")
        assert tool.state == McpToolState.CHANGED
        assert tool.definition["description"] == "Echoes back the input string"
        assert (tool.approved_definition or {})["description"] == "Echoes back the input"
        changed = AuditEvent.objects.get(action="mcp.tool_changed")
        assert changed.metadata["tool"] == "echo"
        assert set(changed.metadata["fields"]) >= {"description", "annotations", "title"}
        assert changed.metadata["approved_digest"] != changed.metadata["digest"]

        # An admin who reviewed it approves the definition they saw, and only that one.
        with pytest.raises(ToolApprovalRefused):
            mcp_tool_approve(
                tool_id=tool.pk, organization_id=org.pk, digest=tool.approved_digest, actor=None
            )
        approve(connection, "echo")
        assert mcp_tool_for_call(connection, "echo").is_callable()
    approvals = AuditEvent.objects.filter(action="mcp.tool_approved").order_by("id")
    assert [e.metadata["tool"] for e in approvals] == ["echo", "echo"]
    assert approvals[1].metadata["previous_digest"] == approvals[0].metadata["digest"]


@pytest.mark.django_db(transaction=True)
def test_a_stdio_server_from_npm_is_added_listed_and_called(org: Organization) -> None:
    connection, report = mcp_connection_create(
        organization=org,
        name="everything-stdio",
        server=StdioServer(
            package=f"npx -y {EVERYTHING_PACKAGE} stdio", env={"EVERYTHING_TOKEN": "secret-1"}
        ),
    )
    assert {"echo", "get-env"} <= set(report.new)
    server = connection.mcp_server
    assert (server.package, server.args, server.env_names) == (
        EVERYTHING_PACKAGE,
        ["stdio"],
        ["EVERYTHING_TOKEN"],
    )
    assert connection.auth_type == "env"
    approve(connection, "get-env")
    result = client.call_tool(upstream_for(connection, server), "get-env", {})
    # The server sees its mapped credential and the sandbox's variables, nothing else.
    shown = result["content"][0]["text"]
    assert '"EVERYTHING_TOKEN": "secret-1"' in shown
    assert "SECRET_KEY" not in shown
    assert "DATABASE_URL" not in shown
    created = AuditEvent.objects.get(action="connection.created")
    assert created.metadata["mcp_server"] == EVERYTHING_PACKAGE
    assert "secret-1" not in str(created.metadata)


@pytest.mark.django_db
def test_a_server_that_cannot_be_reached_saves_nothing(org: Organization) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(GatewayProblem) as refused:
        mcp_connection_create(
            organization=org, name="down", server=HttpServer(url=f"http://127.0.0.1:{port}/mcp")
        )
    assert refused.value.code == "upstream_unreachable"
    assert "127.0.0.1" in refused.value.message
    assert not Connection.objects.filter(name="down").exists()


@pytest.mark.django_db(transaction=True)
def test_refresh_records_health(org: Organization) -> None:
    port = free_port()
    with everything_http(port):
        connection, _ = mcp_connection_create(
            organization=org,
            name="everything",
            server=HttpServer(url=f"http://127.0.0.1:{port}/mcp"),
        )
    connection.refresh_from_db()
    assert connection.mcp_server.is_healthy()
    assert connection.mcp_server.server_name == "mcp-servers/everything"
    with pytest.raises(GatewayProblem):
        mcp_tools_refresh(connection_id=connection.pk)
    connection.mcp_server.refresh_from_db()
    assert not connection.mcp_server.is_healthy()
    assert "127.0.0.1" in connection.mcp_server.last_error


@pytest.mark.django_db(transaction=True)
def test_the_scheduled_refresh_lists_every_active_server(
    org: Organization, settings: Settings
) -> None:
    from apps.connections.tasks import refresh_mcp_connection_tools

    assert settings.CELERY_BEAT_SCHEDULE["connections-refresh-mcp-tools"]["task"] == (
        "connections.refresh_mcp_tools"
    )
    port = free_port()
    with everything_http(port, release="2025.11.25"):
        connection, _ = mcp_connection_create(
            organization=org,
            name="everything",
            server=HttpServer(url=f"http://127.0.0.1:{port}/mcp"),
        )
        approve(connection, "echo")
    with everything_http(port, release="2026.8.31"):
        assert refresh_mcp_connection_tools(connection.pk) == "13 tools, 1 changed"
    assert McpTool.objects.get(connection=connection, name="echo").state == McpToolState.CHANGED
    assert refresh_mcp_connection_tools(connection.pk).startswith("failed: Could not reach")


@pytest.mark.django_db(transaction=True)
def test_disconnecting_an_mcp_server_destroys_its_secrets_and_stops_its_child(
    org: Organization,
) -> None:
    from apps.connections.services import connection_disconnect

    connection, _ = mcp_connection_create(
        organization=org,
        name="local",
        server=StdioServer(package=f"{EVERYTHING_PACKAGE}", args=("stdio",), env={"T": "s3cret"}),
    )
    approve(connection, "echo")
    upstream = upstream_for(connection, connection.mcp_server)
    client.call_tool(upstream, "echo", {"message": "x"})  # a child now runs for it
    [session] = [s for k, s in client._pool.sessions.items() if k[0] == connection.pk]
    pid = session.seen.stdio.pid
    assert pid is not None
    os.kill(pid, 0)  # alive
    connection_disconnect(connection_id=connection.pk, organization=org)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the sandboxed server still runs after its connection was disconnected")
    server = McpServer.objects.get(pk=connection.pk)
    assert server.env_secrets == ""
    assert Connection.objects.get(pk=connection.pk).status == "revoked"
    with pytest.raises(custody.NeedsReauth):
        upstream_for(Connection.objects.get(pk=connection.pk), server)
    event = AuditEvent.objects.get(action="connection.disconnected", connection_id=connection.pk)
    assert event.metadata["revocation"] == "unsupported"


def _gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.django_db(transaction=True)
def test_a_stdio_server_is_reused_then_killed_when_idle(
    org: Organization, settings: Settings
) -> None:
    connection, _ = mcp_connection_create(
        organization=org,
        name="local",
        server=StdioServer(package=EVERYTHING_PACKAGE, args=("stdio",)),
    )
    approve(connection, "echo")
    upstream = upstream_for(connection, connection.mcp_server)
    client.call_tool(upstream, "echo", {"message": "1"})
    [session] = [s for k, s in client._pool.sessions.items() if k[0] == connection.pk]
    pid = session.seen.stdio.pid
    client.call_tool(upstream, "echo", {"message": "2"})
    [again] = [s for k, s in client._pool.sessions.items() if k[0] == connection.pk]
    assert again is session  # one child for both calls
    assert pid is not None
    assert not _gone(pid, 0.2)
    settings.GRANTRY_MCP_SESSION_IDLE_SECONDS = 1
    assert _gone(pid, 15), "an idle sandboxed server was not stopped"


@pytest.mark.django_db(transaction=True)
def test_a_tool_call_past_its_send_window_is_not_handed_to_the_server(
    org: Organization,
) -> None:
    """The broker's send window (apps/workers/fence.py) is checked once the session is
    ready: past it the call never reaches the SDK; within it the call goes."""
    from apps.connections.gateway.client import UpstreamError

    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with everything_http(port, release="2025.11.25"):
        connection, _ = mcp_connection_create(
            organization=org, name="windowed", server=HttpServer(url=url)
        )
        approve(connection, "echo")
        upstream = upstream_for(connection, connection.mcp_server)
        with pytest.raises(UpstreamError) as closed:
            client.call_tool(upstream, "echo", {"message": "late"}, send_by=time.monotonic())
        assert closed.value.code == "send_window_closed"
        assert closed.value.status == 502
        result = client.call_tool(
            upstream, "echo", {"message": "in time"}, send_by=time.monotonic() + 30
        )
        assert result["content"] == [{"type": "text", "text": "Echo: in time"}]
