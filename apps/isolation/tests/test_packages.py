"""Installing a pinned package: npm with lifecycle scripts off, the exact version, no
download at run time (here from npm's cache, which `make mcp-servers` filled)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from pytest_django.fixtures import Settings

from apps.isolation.packages import locate, parse_package


def test_mcp_install_puts_the_exact_version_where_locate_finds_it(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings.GRANTRY_MCP_NPM_PREFIX = str(tmp_path / "npm")
    spec = "@modelcontextprotocol/server-everything@2026.8.31"
    call_command("mcp_install", spec, "--offline")
    installed = locate(parse_package(spec))
    assert installed.entry.name == "index.js"
    assert installed.entry.is_relative_to(tmp_path)
    assert "Installed @modelcontextprotocol/server-everything@2026.8.31" in capsys.readouterr().out


def test_mcp_install_refuses_a_range(tmp_path: Path, settings: Settings) -> None:
    settings.GRANTRY_MCP_NPM_PREFIX = str(tmp_path / "npm")
    with pytest.raises(CommandError, match="not an exact version"):
        call_command("mcp_install", "@modelcontextprotocol/server-everything@latest")
