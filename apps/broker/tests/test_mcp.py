"""The MCP endpoint with the official Python client over real HTTP (live_server),
in both protocol generations, plus the transport rules checked with plain HTTP."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx2
import pytest
from django.test import Client as TestClient
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from apps.audit.models import AuditEvent
from apps.broker.tests.conftest import CONNECTION_SECRET, Agent, make_agent
from apps.broker.tests.upstream import RecordingUpstream
from apps.organizations.models import Organization

MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}


def with_client(url: str, token: str, mode: str, body: Any, sent: list[Any] | None = None) -> Any:
    async def record(request: httpx2.Request) -> None:
        if sent is not None:
            sent.append((dict(request.headers), json.loads(request.content or b"null")))

    async def main() -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, event_hooks={"request": [record]}) as hc,
            Client(streamable_http_client(url, http_client=hc), mode=mode) as client,
        ):
            return await body(client)

    return anyio.run(main)


@pytest.fixture
def mcp_url(live_server: LiveServer) -> Any:
    return f"{live_server.url}/mcp"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.usefixtures("transactional_db")
def test_list_call_and_denial_in_both_protocol_versions(
    org: Organization, upstream: RecordingUpstream, mcp_url: Any, mode: str
) -> None:
    agent = make_agent(org)
    sent: list[Any] = []

    async def body(client: Client) -> Any:
        tools = (await client.list_tools()).tools
        allowed = await client.call_tool("sandbox.list_projects", {})
        denied = await client.call_tool("sandbox.create_project", {"name": "x"})
        return tools, allowed, denied

    tools, allowed, denied = with_client(mcp_url, agent.raw, mode, body, sent)

    assert {t.name for t in tools} == {"sandbox.list_projects", "sandbox.list_tasks"}
    listed = next(t for t in tools if t.name == "sandbox.list_tasks")
    assert "project_id" in listed.input_schema["properties"]
    assert allowed.is_error is False
    assert "Apollo" in allowed.content[0].text
    assert denied.is_error is True
    assert "denied" in denied.content[0].text
    assert "sandbox.create_project" in denied.content[0].text

    [received] = upstream.requests
    assert received.headers["Authorization"] == f"Bearer {CONNECTION_SECRET}"
    assert agent.raw not in json.dumps(received.headers)

    methods = [b.get("method") for _, b in sent if isinstance(b, dict)]
    if mode == "auto":
        assert methods[0] == "server/discover"
        assert "initialize" not in methods
        assert all(h.get("mcp-protocol-version") == MODERN for h, _ in sent)
    else:
        assert methods[0] == "initialize"
        assert "server/discover" not in methods

    events = AuditEvent.objects.filter(action__startswith="broker.execute").order_by("id")
    assert [e.metadata["surface"] for e in events] == ["mcp", "mcp", "mcp"]
    assert [e.decision for e in events] == ["allowed", "allowed", "denied"]


@pytest.mark.usefixtures("transactional_db")
def test_revoked_token_fails_on_the_next_call(
    org: Organization, upstream: RecordingUpstream, mcp_url: Any
) -> None:
    from apps.workers.services import token_revoke

    agent = make_agent(org)

    async def body(client: Client) -> Any:
        first = await client.call_tool("sandbox.list_projects", {})
        await anyio.to_thread.run_sync(lambda: token_revoke(token=agent.token))
        with pytest.raises(MCPError):
            await client.call_tool("sandbox.list_projects", {})
        return first

    first = with_client(mcp_url, agent.raw, "auto", body)
    assert first.is_error is False
    assert len(upstream.requests) == 1


@pytest.mark.usefixtures("transactional_db")
def test_second_organization_sees_none_of_the_first(
    org: Organization, other_org: Organization, upstream: RecordingUpstream, mcp_url: Any
) -> None:
    make_agent(org)
    stranger = make_agent(other_org, name="stranger", connection_name="globex", rules=[])

    async def body(client: Client) -> Any:
        tools = (await client.list_tools()).tools
        call = await client.call_tool("sandbox.list_projects", {"connection": "sandbox"})
        return tools, call

    tools, call = with_client(mcp_url, stranger.raw, "auto", body)
    assert tools == []
    assert call.is_error is True
    assert upstream.requests == []


# --- the transport rules, with plain HTTP --------------------------------------------


def modern(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": method,
        "params": {**(params or {}), "_meta": META},
    }


def mcp_post(client: Any, body: Any, **headers: Any) -> Any:
    return client.post("/mcp", json.dumps(body), content_type="application/json", **headers)


@pytest.mark.django_db
def test_no_token_is_401_pointing_at_the_resource_metadata(
    client: TestClient, settings: Settings
) -> None:
    response = mcp_post(client, modern("server/discover"))
    assert response.status_code == 401
    challenge = response["WWW-Authenticate"]
    expected = f"{settings.GRANTRY_BASE_URL}/.well-known/oauth-protected-resource/mcp"
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{expected}"' in challenge

    bad = mcp_post(client, modern("server/discover"), HTTP_AUTHORIZATION="Bearer gry_nope")
    assert bad.status_code == 401
    assert 'error="invalid_token"' in bad["WWW-Authenticate"]

    metadata = client.get("/.well-known/oauth-protected-resource/mcp").json()
    assert metadata["resource"] == f"{settings.GRANTRY_BASE_URL}/mcp"
    assert metadata["bearer_methods_supported"] == ["header"]


@pytest.mark.django_db
def test_get_and_delete_are_405(client: TestClient, agent: Agent) -> None:
    assert client.get("/mcp", **agent.headers).status_code == 405
    assert client.delete("/mcp", **agent.headers).status_code == 405


@pytest.mark.django_db
def test_origin_is_validated(client: TestClient, agent: Agent, settings: Settings) -> None:
    headers = {
        **agent.headers,
        "HTTP_MCP_PROTOCOL_VERSION": MODERN,
        "HTTP_MCP_METHOD": "server/discover",
    }
    evil = mcp_post(client, modern("server/discover"), HTTP_ORIGIN="http://evil.test", **headers)
    assert evil.status_code == 403
    ours = mcp_post(
        client, modern("server/discover"), HTTP_ORIGIN=settings.GRANTRY_BASE_URL, **headers
    )
    assert ours.status_code == 200
    result = ours.json()["result"]
    assert "2025-11-25" in result["supportedVersions"]
    assert MODERN in result["supportedVersions"]
    assert result["resultType"] == "complete"
    assert "ttlMs" in result
    assert result["cacheScope"] == "private"


@pytest.mark.django_db
def test_header_mismatch_is_400_with_32020(client: TestClient, agent: Agent) -> None:
    response = mcp_post(
        client,
        modern("tools/list"),
        HTTP_MCP_PROTOCOL_VERSION=MODERN,
        HTTP_MCP_METHOD="server/discover",
        **agent.headers,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32020

    name = mcp_post(
        client,
        modern("tools/call", {"name": "sandbox.list_projects", "arguments": {}}),
        HTTP_MCP_PROTOCOL_VERSION=MODERN,
        HTTP_MCP_METHOD="tools/call",
        HTTP_MCP_NAME="sandbox.create_project",
        **agent.headers,
    )
    assert name.status_code == 400
    assert name.json()["error"]["code"] == -32020

    missing = mcp_post(client, modern("tools/list"), **agent.headers)
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == -32020


@pytest.mark.django_db
def test_modern_tools_list_carries_cache_fields(client: TestClient, agent: Agent) -> None:
    response = mcp_post(
        client,
        modern("tools/list"),
        HTTP_MCP_PROTOCOL_VERSION=MODERN,
        HTTP_MCP_METHOD="tools/list",
        **agent.headers,
    )
    result = response.json()["result"]
    assert result["resultType"] == "complete"
    assert result["ttlMs"] == 0
    assert result["cacheScope"] == "private"
    assert {t["name"] for t in result["tools"]} == {"sandbox.list_projects", "sandbox.list_tasks"}


@pytest.mark.django_db
def test_legacy_handshake_and_notifications(client: TestClient, agent: Agent) -> None:
    init = mcp_post(
        client,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        },
        **agent.headers,
    )
    assert init.status_code == 200
    result = init.json()["result"]
    assert result["protocolVersion"] == "2025-11-25"
    assert result["capabilities"]["tools"] == {"listChanged": False}
    assert "Mcp-Session-Id" not in init
    note = mcp_post(
        client,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        HTTP_MCP_PROTOCOL_VERSION="2025-11-25",
        **agent.headers,
    )
    assert note.status_code == 202
    unknown = mcp_post(
        client,
        {"jsonrpc": "2.0", "id": 2, "method": "resources/list"},
        HTTP_MCP_PROTOCOL_VERSION="2025-11-25",
        **agent.headers,
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == -32601


@pytest.mark.usefixtures("transactional_db", "upstream")
def test_tool_schema_requires_a_connection_only_when_several_allowed_ones_fit(
    org: Organization, mcp_url: Any
) -> None:
    from apps.connections.models import Connection

    agent = make_agent(
        org,
        rules=[
            {"kind": "action", "provider_key": "sandbox", "action_pattern": "sandbox.list_projects"}
        ],
    )

    async def tools(client: Client) -> Any:
        return {t.name: t for t in (await client.list_tools()).tools}

    single = with_client(mcp_url, agent.raw, "auto", tools)["sandbox.list_projects"]
    assert "connection" not in single.input_schema.get("required", [])
    Connection.objects.create(
        organization=org,
        provider_key="sandbox",
        name="sandbox-two",
        auth_type="api_key",
        api_key="k",
    )
    double = with_client(mcp_url, agent.raw, "auto", tools)["sandbox.list_projects"]
    assert "connection" in double.input_schema["required"]
    assert sorted(double.input_schema["properties"]["connection"]["enum"]) == [
        "sandbox",
        "sandbox-two",
    ]


# --- conformance (issue 22 item 14) ---------------------------------------------------


@pytest.mark.django_db
def test_a_handshake_version_header_with_a_modern_envelope_is_a_mismatch(
    client: TestClient, agent: Agent
) -> None:
    response = mcp_post(
        client,
        modern("tools/list"),
        HTTP_MCP_PROTOCOL_VERSION="2025-11-25",
        HTTP_MCP_METHOD="tools/list",
        **agent.headers,
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == -32020


@pytest.mark.django_db
def test_ping_exists_only_in_the_handshake_generation(client: TestClient, agent: Agent) -> None:
    modern_ping = mcp_post(
        client,
        modern("ping"),
        HTTP_MCP_PROTOCOL_VERSION=MODERN,
        HTTP_MCP_METHOD="ping",
        **agent.headers,
    )
    assert modern_ping.status_code == 404, modern_ping.content
    assert modern_ping.json()["error"]["code"] == -32601
    legacy_ping = mcp_post(
        client,
        {"jsonrpc": "2.0", "id": 3, "method": "ping"},
        HTTP_MCP_PROTOCOL_VERSION="2025-11-25",
        **agent.headers,
    )
    assert legacy_ping.status_code == 200
    assert legacy_ping.json()["result"] == {}


@pytest.mark.django_db
def test_an_unsupported_version_lists_every_served_one(client: TestClient, agent: Agent) -> None:
    body = modern("tools/list")
    body["params"]["_meta"] = {**META, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}
    response = mcp_post(
        client,
        body,
        HTTP_MCP_PROTOCOL_VERSION="2099-01-01",
        HTTP_MCP_METHOD="tools/list",
        **agent.headers,
    )
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == -32022
    assert "2025-11-25" in error["data"]["supported"]
    assert MODERN in error["data"]["supported"]
    assert error["data"]["requested"] == "2099-01-01"
