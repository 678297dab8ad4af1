"""The MCP gateway end to end: real MCP servers nobody on the project wrote
(@modelcontextprotocol/server-everything over Streamable HTTP, and over stdio in the
sandbox), fronted by Grantry's /mcp on a live server, called by the official Python
`mcp` client with a worker token. Each shows: the tools listed are exactly the
allowed ones; an allowed call works and the upstream saw Grantry's credential, never
the worker token; a denied call and a constraint violation are refused with the rule
named and never reach the upstream; a changed tool is blocked until approved again;
revoking the worker token stops the next call; everything is in the audit trail."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from apps.audit.models import AuditEvent
from apps.broker.tests.conftest import Agent, make_agent
from apps.broker.tests.test_mcp import with_client
from apps.connections.gateway.services import HttpServer, StdioServer, mcp_connection_create
from apps.connections.gateway.tools import mcp_tool_approve
from apps.connections.mcp_models import McpTool
from apps.connections.models import Connection
from apps.connections.tests.mcp_servers import (
    EVERYTHING_PACKAGE,
    Relay,
    everything_http,
    free_port,
)
from apps.organizations.models import Organization

UPSTREAM_SECRET = "upstream-key-3f9a1c"


def approve(connection: Connection, *names: str) -> None:
    for name in names:
        tool = McpTool.objects.get(connection=connection, name=name)
        mcp_tool_approve(
            tool_id=tool.pk, organization_id=tool.organization_id, digest=tool.digest, actor=None
        )


def agent_with(org: Organization, connection: Connection, *rules: dict[str, Any]) -> Agent:
    return make_agent(
        org,
        rules=[{"kind": "mcp", "connection": connection.pk, **rule} for rule in rules],
    )


@pytest.fixture
def everything(org: Organization) -> Iterator[tuple[Connection, Relay]]:
    """server-everything over HTTP behind a relay that records what it received,
    added with a static bearer credential, three of its tools approved."""
    port = free_port()
    with everything_http(port):
        relay = Relay(port)
        try:
            connection, _ = mcp_connection_create(
                organization=org,
                name="everything",
                server=HttpServer(
                    url=f"http://127.0.0.1:{relay.port}/mcp",
                    auth="api_key",
                    secret=UPSTREAM_SECRET,
                ),
            )
            approve(connection, "echo", "get-sum", "get-tiny-image")
            yield connection, relay
        finally:
            relay.close()


def tool_calls_seen(relay: Relay, tool: str) -> int:
    return relay.text.count(f'"name":"{tool}"')


@pytest.mark.usefixtures("transactional_db")
@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_listed_allowed_denied_constrained_and_audited(
    org: Organization, everything: tuple[Connection, Relay], live_server: LiveServer, mode: str
) -> None:
    connection, relay = everything
    agent = agent_with(
        org,
        connection,
        {"action_pattern": "echo"},
        {
            "action_pattern": "get-sum",
            "constraints": [{"field": "a", "op": "max", "value": 10}],
        },
    )

    async def body(client: Client) -> Any:
        tools = (await client.list_tools()).tools
        echoed = await client.call_tool("everything__echo", {"message": "hi"})
        summed = await client.call_tool("everything__get-sum", {"a": 2, "b": 3})
        too_big = await client.call_tool("everything__get-sum", {"a": 50, "b": 3})
        no_rule = await client.call_tool("everything__get-tiny-image", {})
        not_approved = await client.call_tool("everything__get-env", {})
        return tools, echoed, summed, too_big, no_rule, not_approved

    tools, echoed, summed, too_big, no_rule, not_approved = with_client(
        f"{live_server.url}/mcp", agent.raw, mode, body
    )
    # Exactly the allowed ones: approved, and named by a rule (get-tiny-image is
    # approved but no rule names it; get-env has no approval).
    assert sorted(t.name for t in tools) == ["everything__echo", "everything__get-sum"]
    listed = {t.name: t for t in tools}
    assert listed["everything__echo"].description == "Echoes back the input string"
    assert listed["everything__echo"].annotations.read_only_hint is True

    assert echoed.is_error is False
    assert echoed.content[0].text == "Echo: hi"
    assert summed.content[0].text == "The sum of 2 and 3 is 5."
    # What reached the upstream: Grantry's credential, never the worker token.
    assert f"Bearer {UPSTREAM_SECRET}" in relay.text
    assert agent.raw not in relay.text
    assert agent.token.public_id not in relay.text

    assert too_big.is_error is True
    assert "denied" in too_big.content[0].text
    assert "input.a must be at most 10 (got 50)" in too_big.content[0].text
    assert no_rule.is_error is True
    assert "has no rule allowing tool 'get-tiny-image'" in no_rule.content[0].text
    assert not_approved.is_error is True
    assert "has no rule allowing tool 'get-env'" in not_approved.content[0].text
    # Refused calls never reached the upstream.
    assert tool_calls_seen(relay, "get-sum") == 1
    assert tool_calls_seen(relay, "get-tiny-image") == 0
    assert tool_calls_seen(relay, "get-env") == 0

    events = list(
        AuditEvent.objects.filter(action__startswith="broker.execute", connection_id=connection.pk)
        .order_by("id")
        .values_list("action", "decision", "metadata")
    )
    assert [(a, d) for a, d, _ in events] == [
        ("broker.execute.attempt", "allowed"),
        ("broker.execute", "allowed"),
        ("broker.execute.attempt", "allowed"),
        ("broker.execute", "allowed"),
        ("broker.execute", "denied"),
        ("broker.execute", "denied"),
        ("broker.execute", "denied"),
    ]
    assert [m["mcp_tool"] for _, _, m in events] == [
        "echo",
        "echo",
        "get-sum",
        "get-sum",
        "get-sum",
        "get-tiny-image",
        "get-env",
    ]
    assert events[0][2]["action"] == "everything__echo"
    assert events[0][2]["tool_class"] == "read"
    assert events[1][2]["rule_id"] is not None
    assert all(m["surface"] == "mcp" for _, _, m in events)


@pytest.mark.usefixtures("transactional_db")
def test_one_url_per_connection_and_revocation(
    org: Organization, everything: tuple[Connection, Relay], live_server: LiveServer
) -> None:
    from apps.workers.services import token_revoke

    connection, relay = everything
    agent = agent_with(org, connection, {"action_pattern": "*", "action_class": "read"})

    async def body(client: Client) -> Any:
        tools = (await client.list_tools()).tools
        first = await client.call_tool("echo", {"message": "one"})
        await anyio.to_thread.run_sync(lambda: token_revoke(token=agent.token))
        with pytest.raises(MCPError):
            await client.call_tool("echo", {"message": "two"})
        return tools, first

    tools, first = with_client(f"{live_server.url}/mcp/c/everything", agent.raw, "auto", body)
    # Its read-only tools (readOnlyHint) among the approved ones, under their own names.
    assert sorted(t.name for t in tools) == ["echo", "get-sum", "get-tiny-image"]
    assert first.content[0].text == "Echo: one"
    assert tool_calls_seen(relay, "echo") == 1  # the call after revocation never went


@pytest.mark.usefixtures("transactional_db")
def test_a_changed_tool_is_refused_until_approved_again(
    org: Organization, live_server: LiveServer, settings: Settings
) -> None:
    settings.GRANTRY_MCP_TOOLS_MAX_AGE = 0
    port = free_port()
    with everything_http(port, release="2025.11.25"):
        connection, _ = mcp_connection_create(
            organization=org,
            name="everything",
            server=HttpServer(url=f"http://127.0.0.1:{port}/mcp"),
        )
        approve(connection, "echo")
        agent = agent_with(org, connection, {"action_pattern": "echo"})

        async def before(client: Client) -> Any:
            return await client.call_tool("everything__echo", {"message": "x"})

        assert with_client(f"{live_server.url}/mcp", agent.raw, "auto", before).is_error is False

    with everything_http(port, release="2026.8.31"):  # the same URL, the next release

        async def after(client: Client) -> Any:
            call = await client.call_tool("everything__echo", {"message": "x"})
            tools = (await client.list_tools()).tools
            return call, tools

        call, tools = with_client(f"{live_server.url}/mcp", agent.raw, "auto", after)
        assert call.is_error is True
        assert call.content[0].text.startswith("tool_changed: The server behind 'everything'")
        # Once Grantry saw the change, the tool is no longer listed either.
        assert [t.name for t in tools] == []
        approve(connection, "echo")
        again = with_client(f"{live_server.url}/mcp", agent.raw, "auto", before)
        assert again.is_error is False
        assert again.content[0].text == "Echo: x"
    refused = AuditEvent.objects.filter(
        action="broker.execute", connection_id=connection.pk, outcome="failure"
    ).get()
    assert refused.decision == "allowed"  # the rule allowed it; the pin refused it
    assert refused.reason.startswith("The server behind 'everything' changed tool 'echo'")


@pytest.mark.usefixtures("transactional_db")
def test_a_stdio_server_in_the_sandbox_gets_its_credential_not_the_agents(
    org: Organization, live_server: LiveServer
) -> None:
    connection, _ = mcp_connection_create(
        organization=org,
        name="local",
        server=StdioServer(
            package=f"npx -y {EVERYTHING_PACKAGE} stdio", env={"SERVICE_TOKEN": UPSTREAM_SECRET}
        ),
    )
    approve(connection, "get-env")
    agent = agent_with(org, connection, {"action_pattern": "get-env"})

    async def body(client: Client) -> Any:
        return await client.call_tool("local__get-env", {})

    result = with_client(f"{live_server.url}/mcp", agent.raw, "auto", body)
    environment = json.loads(result.content[0].text)
    assert environment["SERVICE_TOKEN"] == UPSTREAM_SECRET
    assert agent.raw not in result.content[0].text
    assert set(environment) <= {"PATH", "HOME", "TMPDIR", "NODE_OPTIONS", "PWD", "SERVICE_TOKEN"}


@pytest.mark.usefixtures("transactional_db")
def test_a_tool_that_needs_approval_waits_then_runs_once(
    org: Organization,
    everything: tuple[Connection, Relay],
    live_server: LiveServer,
    owner: Any,
    member: Any,
    admin: Any,
) -> None:
    """A call needing approval behaves as it does for actions: pending (nothing sent
    upstream), approved by a person, then run once with exactly that input."""
    from apps.approvals.models import Approval
    from apps.approvals.services import approval_decide
    from apps.policies.services import role_create
    from apps.workers.services import token_mint, worker_create

    connection, relay = everything
    role = role_create(
        organization=org,
        name="gated",
        rules=[
            {
                "kind": "mcp",
                "connection": connection.pk,
                "action_pattern": "echo",
                "approval": {"required": True},
            }
        ],
    )
    worker = worker_create(
        organization=org, name="gated-bot", default_role=role, owner=member, actor=owner
    )
    _, raw = token_mint(worker=worker, actor=owner)
    url = f"{live_server.url}/mcp"

    async def ask(client: Client) -> Any:
        return await client.call_tool("everything__echo", {"message": "approved?"})

    pending = with_client(url, raw, "auto", ask)
    assert pending.is_error is False
    approval_id = pending.structured_content["approval"]["id"]
    assert "Pending approval" in pending.content[0].text
    assert tool_calls_seen(relay, "echo") == 0
    approval = Approval.objects.get(public_id=approval_id)
    assert approval.action_name == "everything__echo"
    approval_decide(approval=approval, actor=admin, approve=True)

    async def run(client: Client) -> Any:
        first = await client.call_tool(
            "everything__echo", {"message": "approved?", "_approval": approval_id}
        )
        again = await client.call_tool(
            "everything__echo", {"message": "approved?", "_approval": approval_id}
        )
        return first, again

    first, again = with_client(url, raw, "auto", run)
    assert first.content[0].text == "Echo: approved?"
    assert again.is_error is True  # spent: one approval, one upstream call
    assert tool_calls_seen(relay, "echo") == 1


@pytest.mark.usefixtures("transactional_db")
def test_an_oauth_issued_token_works_on_both_urls_and_the_page_counts_calls(
    org: Organization,
    everything: tuple[Connection, Relay],
    live_server: LiveServer,
    admin: Any,
) -> None:
    """A client that signed in through Grantry's own authorization server (its token
    bound to /mcp) reaches the fronted tools on /mcp and on the connection's URL; the
    server's page then shows the calls per tool."""
    from django.test import Client as TestClient

    from apps.mcpauth import services as mcpauth
    from apps.mcpauth.tests.oauth import (
        authorize_url,
        consent,
        exchange,
        new_flow,
        redirect_params,
        register,
    )

    connection, relay = everything
    agent = agent_with(org, connection, {"action_pattern": "echo"})
    browser = TestClient()
    browser.force_login(admin)
    flow = new_flow(register(browser))
    answer = consent(
        browser, authorize_url(flow, resource=mcpauth.mcp_resource_url()), worker=agent.worker
    )
    token = exchange(browser, flow, redirect_params(answer)["code"]).json()["access_token"]

    async def everywhere(client: Client) -> Any:
        return await client.call_tool("everything__echo", {"message": "oauth"})

    async def one(client: Client) -> Any:
        return await client.call_tool("echo", {"message": "oauth"})

    assert with_client(f"{live_server.url}/mcp", token, "auto", everywhere).is_error is False
    assert (
        with_client(f"{live_server.url}/mcp/c/everything", token, "legacy", one).is_error is False
    )
    assert tool_calls_seen(relay, "echo") == 2
    assert token not in relay.text

    page = browser.get(f"/o/acme/connections/{connection.pk}/mcp/").content.decode()
    row = page[page.index("<code>echo</code>") :]
    assert '<td data-label="Calls">2</td>' in row[: row.index("</tr>")]


@pytest.mark.usefixtures("transactional_db")
def test_simulation_and_least_privilege_replay_recorded_tool_calls(
    org: Organization, everything: tuple[Connection, Relay], live_server: LiveServer
) -> None:
    """The role's recorded tool calls are decided again with the same evaluate():
    a proposal without the tool's rule flips them; the least-privilege report narrows
    a wide MCP rule to the tools actually called."""
    from apps.policies.least_privilege import least_privilege_report
    from apps.policies.simulation import role_simulate

    connection, _ = everything
    agent = agent_with(org, connection, {"action_pattern": "*"})

    async def body(client: Client) -> Any:
        await client.call_tool("everything__echo", {"message": "a"})
        await client.call_tool("everything__echo", {"message": "b"})
        await client.call_tool("everything__get-sum", {"a": 1, "b": 2})

    with_client(f"{live_server.url}/mcp", agent.raw, "auto", body)
    narrower = [{"kind": "mcp", "connection": connection.pk, "action_pattern": "get-sum"}]
    result = role_simulate(role=agent.role, rules=narrower)
    assert (result.calls, result.unchanged, result.allowed_to_denied) == (3, 1, 2)
    assert result.examples["allowed_to_denied"][0].call == "tool echo of 'everything'"

    report = least_privilege_report(role=agent.role)
    assert report.allowed == 3
    proposed = sorted(rule["action_pattern"] for rule in report.proposal)
    assert proposed == ["echo", "get-sum"]  # '*' narrowed to what was called
