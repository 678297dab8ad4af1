"""A remote MCP server behind its own authorization server, fronted by Grantry:
the TypeScript SDK's example server (`simpleStreamableHttp.js --oauth`, its demo
authorization server on a second port), connected by Grantry as its OAuth client,
then called through /mcp by the official Python client and by the TypeScript SDK's
own client with a worker token: the upstream's token stays in Grantry."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client as TestClient
from mcp import Client
from pytest_django.live_server_helper import LiveServer

from apps.broker.tests.test_mcp import with_client
from apps.broker.tests.test_mcp_gateway import agent_with, approve
from apps.connections.gateway.tools import mcp_tools_refresh
from apps.connections.models import Connection, ConnectionStatus
from apps.connections.tests.mcp_servers import NODE_MODULES, free_port, sdk_example
from apps.connections.tests.test_gateway_oauth import add_with_oauth
from apps.organizations.models import Organization

TS_AGENT = Path(__file__).with_name("ts_agent.mjs")


def ts_agent(url: str, token: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The TypeScript SDK's client, run with node, as the agent."""
    done = subprocess.run(
        [settings.GRANTRY_MCP_STDIO_NODE, str(TS_AGENT), url, token, tool, json.dumps(arguments)],
        env={
            "PATH": os.environ.get("PATH", ""),
            "MCP_SDK_DIR": str(NODE_MODULES / "@modelcontextprotocol/sdk"),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.usefixtures("transactional_db")
def test_an_oauth_upstream_called_by_the_python_and_typescript_clients(
    org: Organization, admin: User, live_server: LiveServer
) -> None:
    port, auth_port = free_port(), free_port()
    browser = TestClient()
    browser.force_login(admin)
    with sdk_example("simpleStreamableHttp.js", "--oauth", port=port, auth_port=auth_port):
        authorize = add_with_oauth(browser, f"http://localhost:{port}/mcp", name="demo")
        consent = httpx.get(authorize, follow_redirects=False)
        callback = urlsplit(consent.headers["location"])
        assert browser.get(f"{callback.path}?{callback.query}").status_code == 302
        connection = Connection.objects.get(name="demo")
        assert connection.status == ConnectionStatus.ACTIVE
        mcp_tools_refresh(connection_id=connection.pk)
        approve(connection, "greet", "multi-greet")
        agent = agent_with(org, connection, {"action_pattern": "greet"})

        async def body(client: Client) -> Any:
            tools = (await client.list_tools()).tools
            return tools, await client.call_tool("demo__greet", {"name": "Ada"})

        tools, result = with_client(f"{live_server.url}/mcp", agent.raw, "auto", body)
        assert [t.name for t in tools] == ["demo__greet"]
        assert result.is_error is False
        assert result.content[0].text == "Hello, Ada!"

        ts = ts_agent(f"{live_server.url}/mcp", agent.raw, "demo__greet", {"name": "Grace"})
        assert ts["tools"] == ["demo__greet"]
        assert ts["result"]["content"] == [{"type": "text", "text": "Hello, Grace!"}]
        assert ts["version"] == "2025-11-25"  # the TypeScript client's generation

        denied = ts_agent(f"{live_server.url}/mcp/c/demo", agent.raw, "multi-greet", {"name": "x"})
        assert denied["tools"] == ["greet"]
        assert denied["result"]["isError"] is True
        assert "has no rule allowing tool 'multi-greet'" in denied["result"]["content"][0]["text"]
