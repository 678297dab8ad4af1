"""Where each agent client keeps its configuration, and in which format.

Written from each client's published documentation:

* Claude Desktop: `claude_desktop_config.json` in `~/Library/Application Support/Claude/`
  (macOS), `%APPDATA%\\Claude\\` (Windows), `~/.config/Claude/` (Linux);
  `{"mcpServers": {NAME: {"command", "args", "env"}}}`.
* Claude Code: `.mcp.json` in a project, `~/.claude.json` for the user
  (`mcpServers` at the top, and per project under `projects.<dir>.mcpServers`);
  entries are `{"type": "stdio", "command", "args", "env"}` or
  `{"type": "http"|"sse", "url", "headers"}`.
* Cursor: `~/.cursor/mcp.json` and `<project>/.cursor/mcp.json`, `mcpServers`
  with `command/args/env` or `url/headers`.
* VS Code: `.vscode/mcp.json` and the user profile's `mcp.json` (`servers`, with
  `type`, `command/args/env` or `url/headers`), and the older `"mcp": {"servers": …}`
  in `settings.json`; both are JSON with comments.
* Windsurf: `~/.codeium/windsurf/mcp_config.json`, `mcpServers` with
  `command/args/env` or `serverUrl/headers`.
* Codex: `~/.codex/config.toml` (or `$CODEX_HOME`) and a project's
  `.codex/config.toml`: `[mcp_servers.NAME]` with `command`, `args`, `env` or `url`,
  `http_headers`, `bearer_token_env_var`.
* Zed: `~/.config/zed/settings.json` and a project's `.zed/settings.json` (JSON with
  comments): `context_servers.NAME` with `command/args/env` (older: `command:
  {path, args, env}`) or `url/headers`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePath


@dataclass(frozen=True)
class Client:
    key: str  # what --client takes and the inventory records
    label: str
    format: str  # json | jsonc | toml | env | compose | shell


CLAUDE_DESKTOP = Client("claude-desktop", "Claude Desktop", "json")
CLAUDE_CODE = Client("claude-code", "Claude Code", "json")
CURSOR = Client("cursor", "Cursor", "json")
VSCODE = Client("vscode", "VS Code", "jsonc")
WINDSURF = Client("windsurf", "Windsurf", "json")
CODEX = Client("codex", "Codex", "toml")
ZED = Client("zed", "Zed", "jsonc")
ENV_FILE = Client("env", ".env file", "env")
COMPOSE = Client("compose", "docker-compose", "compose")
SHELL = Client("shell", "shell profile", "shell")
UNKNOWN_JSON = Client("json", "JSON file", "jsonc")
UNKNOWN_TOML = Client("toml", "TOML file", "toml")
TEXT = Client("text", "text file", "shell")

SHELL_PROFILES = (
    ".bashrc",
    ".bash_profile",
    ".profile",
    ".zshrc",
    ".zprofile",
    ".zshenv",
    ".config/fish/config.fish",
)


def home_locations(home: Path) -> list[Path]:
    """Every per-user config file of the clients above, whether it exists or not."""
    appdata = Path(os.environ["APPDATA"]) if os.environ.get("APPDATA") else home / "AppData/Roaming"
    mac = home / "Library/Application Support"
    codex_home = Path(os.environ["CODEX_HOME"]) if os.environ.get("CODEX_HOME") else home / ".codex"
    places = [
        mac / "Claude/claude_desktop_config.json",
        home / ".config/Claude/claude_desktop_config.json",
        appdata / "Claude/claude_desktop_config.json",
        home / ".claude.json",
        home / ".mcp.json",
        home / ".cursor/mcp.json",
        home / ".config/Code/User/mcp.json",
        home / ".config/Code/User/settings.json",
        mac / "Code/User/mcp.json",
        mac / "Code/User/settings.json",
        appdata / "Code/User/mcp.json",
        appdata / "Code/User/settings.json",
        home / ".codeium/windsurf/mcp_config.json",
        codex_home / "config.toml",
        home / ".config/zed/settings.json",
        home / ".env",
    ]
    places.extend(home / name for name in SHELL_PROFILES)
    return places


def client_for(path: PurePath) -> Client | None:
    """The client a file belongs to, from its name and folder; None: not an agent config."""
    return _agent_client_for(path) or _program_file_for(path.name)


def _agent_client_for(path: PurePath) -> Client | None:
    """An MCP client's own configuration file (one branch per client's file name)."""
    name = path.name
    parent = path.parent.name
    if name == "claude_desktop_config.json":
        return CLAUDE_DESKTOP
    if name in (".claude.json", ".mcp.json"):
        return CLAUDE_CODE
    if name == "mcp.json" and parent == ".cursor":
        return CURSOR
    if name in ("mcp.json", "settings.json") and (
        parent == ".vscode" or path.parent.parts[-2:] == ("Code", "User")
    ):
        return VSCODE
    if name == "mcp_config.json" and parent in ("windsurf", ".windsurf"):
        return WINDSURF
    if name == "config.toml" and parent in (
        ".codex",
        os.path.basename(os.environ.get("CODEX_HOME", ".codex")),
    ):
        return CODEX
    if name == "settings.json" and parent in ("zed", ".zed"):
        return ZED
    return None


def _program_file_for(name: str) -> Client | None:
    """A file that configures programs in general: .env files, compose files, shell profiles."""
    if name == ".env" or (name.startswith(".env.") and not name.endswith((".swp", "~"))):
        return ENV_FILE
    if (name.startswith(("docker-compose", "compose"))) and name.endswith((".yml", ".yaml")):
        return COMPOSE
    if name in {PurePath(p).name for p in SHELL_PROFILES}:
        return SHELL
    return None


def client_for_any(path: PurePath) -> Client:
    """For a file named on the command line: its client, else a guess from its suffix."""
    known = client_for(path)
    if known is not None:
        return known
    if path.suffix == ".json":
        return UNKNOWN_JSON
    if path.suffix == ".toml":
        return UNKNOWN_TOML
    return TEXT


def by_key(key: str) -> Client:
    for client in (CLAUDE_DESKTOP, CLAUDE_CODE, CURSOR, VSCODE, WINDSURF, CODEX, ZED):
        if client.key == key:
            return client
    raise KeyError(key)
