"""The migration end to end, as a new user follows it, against a live Grantry and a local
GitHub: `grantry scan --check --upload` on a fake home whose Cursor config gives the
GitHub MCP server a raw key → the proposed role and a worker → `grantry import` →
`grantry rewrite` → the official `mcp` client, started from the rewritten config, calls
a tool through Grantry's /mcp → a new key, the old one revoked at the provider →
"confirm rotated" → the finding shows done. The raw key appears in no response, CLI
output, page, audit event or log line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from django.contrib.auth.models import User
from django.test import Client
from mcp import Client as McpClient
from mcp.client.streamable_http import streamable_http_client
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from apps.accounts.services import personal_token_mint
from apps.audit.models import AuditEvent
from apps.connections.models import Connection, RetiredCredential
from apps.inventory.models import Finding, FindingState
from apps.inventory.tests.conftest import FakeGitHub, github_key
from apps.organizations.models import Organization

CLI = Path(__file__).resolve().parents[3] / "cli"


class Run:
    """The `grantry` command in its own process, with a fake home."""

    def __init__(self, home: Path, github: FakeGitHub) -> None:
        self.home = home
        self.env = {
            "HOME": str(home),
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(CLI),
            "GRANTRY_CHECK_URLS": f"github={github.url}",
        }
        self.seen: list[str] = []

    def __call__(self, *args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [sys.executable, "-m", "grantry_cli", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.home,
        )
        self.seen.append(done.stdout + done.stderr)
        assert done.returncode == 0, f"grantry {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout


def http(method: str, url: str, token: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def call_tool_from_config(config: Path, tool: str) -> Any:
    """Start the official MCP client the way the rewritten config says."""
    entry = json.loads(config.read_text())["mcpServers"]["grantry"]

    async def main() -> Any:
        async with httpx2.AsyncClient(headers=entry.get("headers", {})) as client:
            transport = streamable_http_client(entry["url"], http_client=client)
            async with McpClient(transport, mode="auto") as mcp:
                names = [t.name for t in (await mcp.list_tools()).tools]
                return names, await mcp.call_tool(tool, {})

    return anyio.run(main)


@pytest.mark.slow
def test_scan_upload_import_rewrite_call_rotate_done(
    transactional_db: None,  # noqa: ARG001 - database access
    live_server: LiveServer,
    settings: Settings,
    github: FakeGitHub,
    org: Organization,
    admin: User,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings.GRANTRY_BASE_URL = live_server.url
    raw = github_key()
    github.accepted.add(raw)
    home = tmp_path / "home"
    cursor = home / ".cursor" / "mcp.json"
    cursor.parent.mkdir(parents=True)
    cursor.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "github": {
                        "command": "npx",
                        "args": ["-y", "@modelcontextprotocol/server-github"],
                        "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": raw},
                    }
                }
            },
            indent=2,
        )
    )
    grantry = Run(home, github)
    _token, personal = personal_token_mint(user=admin, organization=org, name="laptop")
    api = f"{live_server.url}/api/v1/orgs/{org.slug}/"
    answers: list[str] = []

    # 1. Log in, scan with the scope check, upload.
    grantry("login", "--url", live_server.url, "--org", org.slug, "--token-stdin", stdin=personal)
    scanned = grantry("scan", "--check", "--upload")
    assert "check: live; scopes: read:user, repo" in scanned
    assert "Uploaded to Grantry: 1 new keys" in scanned
    finding = Finding.objects.get(organization=org)
    assert (finding.state, finding.scopes) == (FindingState.FOUND, ["read:user", "repo"])

    # 2. The proposed role, saved as it is, and a worker with it.
    status, body = http(
        "GET", f"{api}inventory/findings/{finding.public_id}/role-proposal/", personal
    )
    answers.append(body)
    proposal = json.loads(body)
    proposal["name"] = "github-agent"
    status, body = http(
        "POST", f"{api}inventory/findings/{finding.public_id}/role-proposal/", personal, proposal
    )
    assert status == 201, body
    status, body = http(
        "POST",
        f"{api}workers/",
        personal,
        {"name": "cursor-agent", "default_role": json.loads(body)["role"]},
    )
    assert status == 201, body

    # 3. Import (checked at the provider), then rewrite the config with a minted token.
    imported = grantry("import", finding.public_id, "--name", "github-main")
    assert "into connection 'github-main'" in imported
    assert Connection.objects.get(name="github-main").api_key == raw
    rewritten = grantry("rewrite", str(cursor), "--worker", "cursor-agent")
    assert "github replaced by 'grantry'" in rewritten
    assert "Told Grantry" in rewritten
    assert raw not in cursor.read_text()
    finding.refresh_from_db()
    assert finding.state == FindingState.CONFIG_REPLACED

    # 4. The agent, unchanged but for its config, calls a tool through Grantry.
    names, result = call_tool_from_config(cursor, "github.get_authenticated_user")
    assert "github.get_authenticated_user" in names
    assert "github.create_issue" in names  # writes are offered, behind approval
    assert result.is_error is False, result.content
    assert "octo" in result.content[0].text

    # The same worker token from the command line.
    token = json.loads(cursor.read_text())["mcpServers"]["grantry"]["headers"]["Authorization"]
    grantry.env["GRANTRY_TOKEN"] = token.removeprefix("Bearer ")
    called = grantry("call", "github.get_authenticated_user", "--input", "{}")
    assert '"login": "octo"' in called

    # 5. Rotate: a new key for the connection, the old one revoked, confirmed.
    new = github_key()
    github.accepted.add(new)
    status, body = http(
        "POST", f"{api}inventory/findings/{finding.public_id}/new-key/", personal, {"api_key": new}
    )
    assert status == 200, body
    answers.append(body)
    status, body = http(
        "POST", f"{api}inventory/findings/{finding.public_id}/confirm-rotated/", personal
    )
    assert status == 409, body  # the provider still takes the old key
    answers.append(body)
    github.accepted.discard(raw)
    status, body = http(
        "POST", f"{api}inventory/findings/{finding.public_id}/confirm-rotated/", personal
    )
    assert status == 200, body
    answers.append(body)
    assert json.loads(body)["state"] == "confirmed_unused"
    assert RetiredCredential.objects.get().secret == ""
    _names, again = call_tool_from_config(cursor, "github.get_authenticated_user")
    assert again.is_error is False  # the connection works with its new key

    # 6. The finding shows done; the raw key is nowhere.
    page = Client()
    page.force_login(admin)
    for path in (
        f"/o/{org.slug}/inventory/",
        f"/o/{org.slug}/inventory/{finding.public_id}/",
        f"/o/{org.slug}/inventory/{finding.public_id}/role/",
    ):
        response = page.get(path)
        assert response.status_code == 200
        answers.append(response.content.decode())
    assert "Confirmed unused" in answers[-2]
    for path in (
        "inventory/findings/",
        "inventory/summary/",
        f"inventory/findings/{finding.public_id}/",
    ):
        answers.append(http("GET", f"{api}{path}", personal)[1])
    answers.append(http("GET", f"{api}audit/events/", personal)[1])
    everything = "\n".join(
        [
            *answers,
            *grantry.seen,
            *(repr(e.__dict__) for e in AuditEvent.objects.all()),
            *(r.getMessage() for r in caplog.records),
            cursor.read_text(),
        ]
    )
    assert len(everything) > 5000
    assert raw not in everything
    assert new not in everything
    assert os.path.exists(next(cursor.parent.glob("mcp.json.grantry-backup-*")))
