"""The isolation claims of apps/isolation/sandbox.py, each played by an attacker: a
stdio server in the sandbox cannot read Grantry's environment, its files or its
database; what the sandbox does not prevent (network egress when an admin turns it
on) is shown as well. And a real server from npm runs in it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from mcp import Client

from apps.isolation.packages import PackageError, locate, parse_package
from apps.isolation.sandbox import sandbox_command
from apps.isolation.tests.conftest import attacker_command, probe, with_server

REPO = Path(settings.BASE_DIR)
CANARY = "grantry-canary-7d1f0c"


@pytest.mark.usefixtures("attacker_prefix")
def test_a_stdio_server_cannot_read_grantrys_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRANTRY_CANARY_SECRET", CANARY)
    secret_key = os.environ["SECRET_KEY"]
    report = probe(attacker_command(secrets={"SERVICE_TOKEN": "tok-for-the-server"}))

    # Only what the sandbox sets plus the one mapped credential.
    # (PWD is what bubblewrap sets for --chdir.)
    assert set(report["env"]) == {"PATH", "HOME", "TMPDIR", "NODE_OPTIONS", "PWD", "SERVICE_TOKEN"}
    assert report["env"]["SERVICE_TOKEN"] == "tok-for-the-server"
    assert report["uid"] == 65534
    # No process in the sandbox (bubblewrap's own init included) holds Grantry's.
    every_environ = " ".join(report["environs"])
    for value in (CANARY, secret_key, os.environ["GRANTRY_ENCRYPTION_KEY"], "DATABASE_URL"):
        assert value not in every_environ
    # Nor is a credential on any command line (ps would show it host-wide).
    assert "tok-for-the-server" not in " ".join(report["processes"])


@pytest.mark.usefixtures("attacker_prefix")
def test_a_stdio_server_cannot_read_grantrys_files() -> None:
    targets = [
        str(REPO / "grantry" / "settings.py"),
        str(REPO / "manage.py"),
        str(REPO / "var" / "dev.env"),
        "/etc/passwd",
        "/etc/shadow",
        "/root/.bash_history",
        f"/proc/{os.getpid()}/environ",
    ]
    report = probe(attacker_command(), paths=targets, dirs=["/", "/tmp", str(REPO)])

    for path in targets:
        assert report["files"][path] == "error:ENOENT", path
    assert report["dirs"]["/"] == ["bin", "dev", "lib", "lib64", "opt", "proc", "tmp", "usr"]
    assert report["dirs"]["/tmp"] == []  # a private /tmp
    assert report["dirs"][str(REPO)] == "error:ENOENT"
    # The test's own process is invisible: only the sandbox's processes are listed.
    assert len(report["processes"]) <= 3


@pytest.mark.usefixtures("attacker_prefix")
def test_a_stdio_server_cannot_reach_grantrys_database_or_cache() -> None:
    database = settings.DATABASES["default"]
    report = probe(
        attacker_command(),
        tcp=[["127.0.0.1", int(database.get("PORT") or 5432)], ["127.0.0.1", 6379]],
        unix=["/var/run/postgresql/.s.PGSQL.5432", "/tmp/.s.PGSQL.5432"],
    )
    assert set(report["tcp"].values()) == {"error:ECONNREFUSED"}  # its own empty network
    assert set(report["unix"].values()) == {"error:ENOENT"}


@pytest.mark.usefixtures("attacker_prefix")
def test_with_network_access_on_the_child_reaches_loopback_too() -> None:
    """What the README says the sandbox does NOT prevent: a server given network
    access shares the host's network, loopback included (here PostgreSQL's port)."""
    port = int(settings.DATABASES["default"].get("PORT") or 5432)
    report = probe(attacker_command(network=True), tcp=[["127.0.0.1", port]])
    assert report["tcp"][f"127.0.0.1:{port}"] == "connected"


def test_a_real_npm_server_runs_in_the_sandbox() -> None:
    """@modelcontextprotocol/server-everything, pinned, started with node in bubblewrap."""
    installed = locate(
        parse_package("npx -y @modelcontextprotocol/server-everything@2026.8.31 stdio")
    )

    async def body(client: Client) -> Any:
        tools = (await client.list_tools()).tools
        echoed = await client.call_tool("echo", {"message": "hello from the sandbox"})
        return tools, echoed

    tools, echoed = with_server(sandbox_command(installed, secrets={}), body)
    assert {"echo", "get-sum"} <= {t.name for t in tools}
    assert "hello from the sandbox" in echoed.content[0].text


def test_only_an_exact_installed_version_runs() -> None:
    with pytest.raises(PackageError, match="not an exact version"):
        parse_package("npx -y @modelcontextprotocol/server-everything@^2026.8.31")
    with pytest.raises(PackageError, match="names no version"):
        parse_package("npx -y @modelcontextprotocol/server-everything")
    with pytest.raises(PackageError, match="not the pinned"):
        locate(parse_package("@modelcontextprotocol/server-everything@2026.8.30"))
    with pytest.raises(PackageError, match="not installed"):
        locate(parse_package("left-pad@1.3.0"))
    with pytest.raises(PackageError, match="'uvx' servers are not supported yet"):
        parse_package("uvx mcp-server-fetch==2025.4.7")


@pytest.mark.usefixtures("attacker_prefix")
@pytest.mark.parametrize("tool", ["flood", "endless_line"])
def test_a_message_over_the_cap_ends_the_child_not_grantry(tool: str) -> None:
    """50 MB in one message, or a line that never ends: the reader stops at the cap,
    kills the child, and the waiting call ends instead of Grantry buffering it."""
    from mcp.shared.exceptions import MCPError

    from apps.isolation.transport import Diagnostics

    diagnostics = Diagnostics()

    async def body(client: Client) -> Any:
        with pytest.raises(MCPError, match="Connection closed"):
            await client.call_tool(tool, {})

    with_server(attacker_command(), body, max_message_bytes=1_000_000, diagnostics=diagnostics)
    assert diagnostics.problem == "the server sent a message over 1000000 bytes"
    assert diagnostics.exit_code is not None  # the child is gone
