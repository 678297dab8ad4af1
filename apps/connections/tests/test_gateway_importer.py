"""Reading the MCP configs agents use today: what becomes a proposal, what is moved
into custody, what is refused and why."""

from __future__ import annotations

import json

import pytest

from apps.connections.gateway.importer import ConfigError, parse_config
from apps.connections.gateway.services import HttpServer, StdioServer


def test_claude_cursor_and_vscode_shapes() -> None:
    claude = parse_config(
        json.dumps(
            {
                "mcpServers": {
                    "GitHub": {
                        "command": "npx",
                        "args": ["-y", "@modelcontextprotocol/server-github@2025.4.8"],
                        "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_x"},
                    }
                }
            }
        )
    )
    [github] = claude
    assert github.name == "github"
    assert isinstance(github.server, StdioServer)
    assert github.server.package == "@modelcontextprotocol/server-github@2025.4.8"
    assert github.server.env == {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_x"}
    assert github.moved == ["GITHUB_PERSONAL_ACCESS_TOKEN"]

    vscode = parse_config(
        json.dumps(
            {
                "servers": {
                    "linear": {
                        "type": "http",
                        "url": "https://mcp.linear.app/mcp",
                        "headers": {"Authorization": "Bearer lin_x"},
                    }
                }
            }
        )
    )
    [linear] = vscode
    assert isinstance(linear.server, HttpServer)
    assert (linear.server.header_name, linear.server.header_prefix) == ("Authorization", "Bearer ")
    assert linear.server.secret == "lin_x"

    settings_json = parse_config(
        json.dumps({"mcp": {"servers": {"a__b c": {"url": "https://x.example/mcp"}}}})
    )
    assert settings_json[0].name == "a_b-c"  # a name MCP connections may carry


def test_what_cannot_be_imported_says_why() -> None:
    proposals = parse_config(
        json.dumps(
            {
                "mcpServers": {
                    "sse": {"type": "sse", "url": "https://x.example/sse"},
                    "placeholder": {
                        "command": "npx",
                        "args": ["-y", "pkg@1.0.0"],
                        "env": {"TOKEN": "${input:token}"},
                    },
                    "python": {"command": "uvx", "args": ["mcp-server-fetch"]},
                    "empty": {},
                }
            }
        )
    )
    problems = {p.key: p.problem for p in proposals}
    assert problems["sse"].startswith("The legacy HTTP+SSE transport is not supported")
    assert problems["placeholder"] == "TOKEN are placeholders; enter them in Grantry."
    assert problems["python"] == "Grantry runs pinned npm packages (npx); 'uvx' is not supported."
    assert problems["empty"] == "The entry has neither a url nor a command."
    assert all(p.server is None for p in proposals)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not valid JSON"),
        ("[]", "not a JSON object"),
        ('{"other": {}}', "No servers found"),
        (json.dumps({"mcpServers": {f"s{i}": {} for i in range(11)}}), "at most 10 at once"),
    ],
)
def test_a_config_that_is_not_one(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text)
