"""The MCP pages of the dashboard: add a server, its health and tools, approve (only
the definition shown), import a Claude Desktop / Cursor config; members read, admins
write, other organizations get 404; a credential never appears on a page."""

from __future__ import annotations

import html
import json

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from apps.audit.models import AuditEvent
from apps.connections import credentials, custody
from apps.connections.mcp_models import McpTool, McpToolState
from apps.connections.models import Connection
from apps.connections.tests.hostile_mcp import HostileMcpServer
from apps.connections.tests.mcp_servers import EVERYTHING_PACKAGE
from apps.organizations.models import Organization

CANARY = "CANARY-mcp-7d1e0f-do-not-leak"


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db(transaction=True)
def test_add_review_and_approve_a_stdio_server(admin: User, member: User, outsider: User) -> None:
    page = signed_in(admin)
    added = page.post(
        "/o/acme/connections/mcp/add/",
        {
            "name": "everything",
            "transport": "stdio",
            "package": f"npx -y {EVERYTHING_PACKAGE} stdio",
            "env": f"EVERYTHING_TOKEN={CANARY}",
        },
    )
    assert added.status_code == 302, added.content.decode()[:3000]
    connection = Connection.objects.get(name="everything")
    detail_url = f"/o/acme/connections/{connection.pk}/mcp/"
    assert added["Location"] == detail_url
    detail = page.get(detail_url)
    text = detail.content.decode()
    new = McpTool.objects.filter(connection=connection, state=McpToolState.NEW).count()
    assert f"Approve the {new} new tools as listed" in text
    assert "New" in text
    assert "EVERYTHING_TOKEN" in text
    assert CANARY not in text

    tool = McpTool.objects.get(connection=connection, name="echo")
    tool_page = page.get(f"{detail_url}tools/{tool.pk}/")
    assert "Echoes back the input string" in tool_page.content.decode()
    # An approval names the definition the admin saw; another digest is refused.
    stale = page.post(f"{detail_url}tools/{tool.pk}/", {"digest": "0" * 64}, follow=True)
    assert "changed since you looked at it" in stale.content.decode()
    assert McpTool.objects.get(pk=tool.pk).state == McpToolState.NEW
    page.post(f"{detail_url}tools/{tool.pk}/", {"digest": tool.digest})
    assert McpTool.objects.get(pk=tool.pk).state == McpToolState.APPROVED

    # Members read, admins write.
    reader = signed_in(member)
    assert reader.get(detail_url).status_code == 200
    other = McpTool.objects.get(connection=connection, name="get-sum")
    assert (
        reader.post(f"{detail_url}tools/{other.pk}/", {"digest": other.digest}).status_code == 403
    )
    assert reader.post(f"{detail_url}refresh/").status_code == 403
    # Another organization sees nothing of it.
    stranger = signed_in(outsider)
    for url in (detail_url, f"{detail_url}tools/{tool.pk}/"):
        assert stranger.get(url).status_code == 404
        assert stranger.get(url.replace("/o/acme/", "/o/globex/")).status_code == 404
    assert (
        stranger.post(
            f"/o/globex/connections/{connection.pk}/mcp/approve-new/",
            {"tool": [f"{other.pk}:{other.digest}"]},
        ).status_code
        == 404
    )
    assert McpTool.objects.get(pk=other.pk).state == McpToolState.NEW

    page.post(f"{detail_url}approve-new/", {"tool": [f"{other.pk}:{other.digest}"]})
    assert McpTool.objects.get(pk=other.pk).state == McpToolState.APPROVED
    listing = page.get("/o/acme/connections/").content.decode()
    assert "MCP server" in listing
    assert CANARY not in listing
    for event in AuditEvent.objects.all():
        assert CANARY not in json.dumps(event.metadata)


@pytest.mark.django_db(transaction=True)
def test_import_a_client_config(admin: User, org: Organization) -> None:
    hostile = HostileMcpServer()  # behaves ("ok"): a remote server with a header key
    try:
        config = {
            "mcpServers": {
                "everything": {
                    "command": "npx",
                    "args": ["-y", EVERYTHING_PACKAGE, "stdio"],
                    "env": {"EVERYTHING_TOKEN": CANARY},
                },
                "Remote Tools": {
                    "url": hostile.url,
                    "headers": {"Authorization": f"Bearer {CANARY}-remote"},
                },
                "unpinned": {
                    "command": "npx",
                    "args": ["-y", "@modelcontextprotocol/server-github"],
                },
                "docker": {"command": "docker", "args": ["run", "-i", "mcp/github"]},
            }
        }
        response = signed_in(admin).post(
            "/o/acme/connections/mcp/import/", {"config": json.dumps(config)}
        )
    finally:
        hostile.close()
    assert response.status_code == 200
    text = response.content.decode()
    assert CANARY not in text
    assert text.count("Added</span>") == 2
    assert "Rotate" in text
    assert "names no version" in text
    assert "&#x27;docker&#x27; is not supported" in text
    # The replacement block points the client at Grantry, one URL for all and one per server.
    shown = html.unescape(text)
    assert f'"url": "{settings.GRANTRY_BASE_URL}/mcp/c/remote-tools"' in shown
    assert f'"url": "{settings.GRANTRY_BASE_URL}/mcp"' in shown
    assert '"Authorization": "Bearer <your worker token>"' in shown
    remote = Connection.objects.get(organization=org, name="remote-tools")
    assert remote.auth_type == "api_key"
    assert remote.mcp_server.header_prefix == "Bearer "
    assert credentials.mcp_auth_for(remote, remote.mcp_server).headers == {
        "Authorization": f"Bearer {CANARY}-remote"
    }
    local = Connection.objects.get(organization=org, name="everything")
    assert custody.mcp_env_secrets(local.mcp_server) == {"EVERYTHING_TOKEN": CANARY}
