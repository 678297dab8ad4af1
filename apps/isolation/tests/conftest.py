"""A hostile stdio server (attacker.js) installed like any pinned npm package, in a
prefix of its own, and a helper to talk to a sandboxed server with the `mcp` client."""

from __future__ import annotations

import json
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from mcp import Client
from pytest_django.fixtures import Settings

from apps.isolation.packages import locate, parse_package
from apps.isolation.sandbox import Limits, SandboxCommand, sandbox_command
from apps.isolation.transport import Diagnostics, isolated_stdio

HERE = Path(__file__).resolve().parent
T = TypeVar("T")


@pytest.fixture
def attacker_prefix(tmp_path: Path, settings: Settings) -> Path:
    package = tmp_path / "prefix" / "node_modules" / "grantry-attacker"
    package.mkdir(parents=True)
    shutil.copy(HERE / "attacker.js", package / "bin.js")
    (package / "package.json").write_text(
        json.dumps({"name": "grantry-attacker", "version": "1.0.0", "bin": "bin.js"})
    )
    settings.GRANTRY_MCP_NPM_PREFIX = str(tmp_path / "prefix")
    return tmp_path / "prefix"


def attacker_command(
    *, secrets: dict[str, str] | None = None, network: bool = False, limits: Limits | None = None
) -> SandboxCommand:
    installed = locate(parse_package("grantry-attacker@1.0.0"))
    return sandbox_command(installed, secrets=secrets or {}, network=network, limits=limits)


def with_server(
    command: SandboxCommand,
    body: Callable[[Client], Awaitable[T]],
    *,
    max_message_bytes: int = 1_000_000,
    timeout: float = 30,
    diagnostics: Diagnostics | None = None,
) -> T:
    async def main() -> T:
        with anyio.fail_after(timeout):
            transport = isolated_stdio(
                command, max_message_bytes=max_message_bytes, diagnostics=diagnostics
            )
            async with Client(transport, mode="legacy") as client:
                return await body(client)

    return anyio.run(main)


def probe(command: SandboxCommand, **arguments: Any) -> dict[str, Any]:
    async def body(client: Client) -> Any:
        result = await client.call_tool("probe", arguments)
        return json.loads(result.content[0].text)

    report: dict[str, Any] = with_server(command, body)
    return report
