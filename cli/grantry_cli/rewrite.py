"""`grantry rewrite CONFIG` and `grantry mcp-config`: the MCP entry that points a client
at Grantry's `/mcp`, in each client's own format, and the rewrite that puts it in place
of the entries that hold raw keys (keeping a backup, printing a diff with every secret
redacted). The agent's own code is never touched: only its MCP config.
"""

from __future__ import annotations

import difflib
import json
import re
import shutil
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grantry_cli import clients, readers
from grantry_cli.detect import Secret, detect

ENTRY_NAME = "grantry"


class CannotRewrite(Exception):
    """The file cannot be rewritten safely (the message says what to do instead)."""


def entry(client: str, url: str, token: str | None) -> dict[str, Any]:
    """The MCP server entry for one client: a static worker token in a header, or (no
    token) OAuth, where the client signs in on Grantry's consent page itself."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    if client == "claude-desktop":
        # Claude Desktop starts local servers only from its file; the mcp-remote bridge
        # connects it to a remote one (and does the OAuth sign-in when there is no token).
        args = ["-y", "mcp-remote", url]
        if not token:
            return {"command": "npx", "args": args}
        return {
            "command": "npx",
            "args": [*args, "--header", "Authorization:${GRANTRY_AUTH}"],
            "env": {"GRANTRY_AUTH": f"Bearer {token}"},
        }
    if client == "windsurf":
        result: dict[str, Any] = {"serverUrl": url}
    elif client in ("claude-code", "vscode"):
        result = {"type": "http", "url": url}
    else:  # cursor, zed
        result = {"url": url}
    if headers:
        result["headers"] = headers
    return result


def toml_entry(url: str, token: str | None) -> str:
    lines = [f"[mcp_servers.{ENTRY_NAME}]", f"url = {json.dumps(url)}"]
    if token:
        lines.append(f"http_headers = {{ Authorization = {json.dumps('Bearer ' + token)} }}")
    return "\n".join(lines) + "\n"


def snippet(client: str, url: str, token: str | None) -> str:
    """What `grantry mcp-config --client …` prints: a whole file's worth for that client."""
    if client == "codex":
        return toml_entry(url, token)
    container = "servers" if client == "vscode" else "mcpServers"
    return json.dumps({container: {ENTRY_NAME: entry(client, url, token)}}, indent=2) + "\n"


@dataclass
class Rewrite:
    path: Path
    client: str
    before: str
    after: str
    replaced: list[str]  # the MCP server entries taken out
    secrets: list[Secret] = field(default_factory=list, repr=False)

    def diff(self, *, hide: list[str]) -> str:
        """The unified diff with every secret (old keys, the new token) redacted."""
        lines = difflib.unified_diff(
            self.before.splitlines(keepends=True),
            self.after.splitlines(keepends=True),
            f"{self.path} (before)",
            f"{self.path} (after)",
        )
        text = "".join(lines)
        for secret in self.secrets:
            text = text.replace(secret.value, f"‹{secret.label} {secret.fingerprint}›")
        for value in hide:
            if value:
                text = text.replace(value, f"{value[:4]}‹redacted›")
        return text


def _raw_keys(node: Any) -> list[Secret]:
    found: list[Secret] = []
    for value in readers.walk(node):
        found.extend(detect(value.text, name=value.name))
    return found


def _containers(data: Any) -> list[dict[str, Any]]:
    """Every dict of MCP server entries in a parsed config, at any depth."""
    found: list[dict[str, Any]] = []
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                if key in ("mcpServers", "servers", "context_servers") and isinstance(child, dict):
                    found.append(child)
                stack.append(child)
        elif isinstance(node, list):
            stack.extend(node)
    return found


def plan(path: Path, *, url: str, token: str | None, only: list[str] | None = None) -> Rewrite:
    client = clients.client_for(path)
    if client is None or client.format not in ("json", "jsonc", "toml"):
        raise CannotRewrite(
            f"{path} is not an MCP client config Grantry knows. Rewrite works on the MCP configs "
            "of Claude Desktop, Claude Code, Cursor, VS Code, Windsurf, Codex and Zed; remove "
            "a key from a .env file or a shell profile by hand once it is imported."
        )
    before = path.read_text(encoding="utf-8")
    if client.format == "toml":
        return _plan_toml(path, before, url=url, token=token, only=only)
    if client.format == "jsonc" and readers.strip_jsonc(before) != before:
        raise CannotRewrite(
            f"{path} has comments or trailing commas, which a rewrite would lose. Replace the "
            f"entry by hand with the one `grantry mcp-config --client {client.key}` prints."
        )
    try:
        data = json.loads(before)
    except ValueError as exc:
        raise CannotRewrite(f"{path} is not valid JSON ({exc}); nothing was changed.") from None
    replaced: list[str] = []
    secrets: list[Secret] = []
    touched = 0
    for container in _containers(data):
        doomed = [n for n in container if _raw_keys(container[n]) and (only is None or n in only)]
        for name in doomed:
            replaced.append(name)
            secrets.extend(_raw_keys(container.pop(name)))
        if doomed:  # each scope that lost a server reaches Grantry instead (Claude Code's
            touched += 1  # user file has a user scope and one per project)
            container[ENTRY_NAME] = entry(client.key, url, token)
    if not touched:
        raise CannotRewrite(f"No MCP server entry in {path} holds a raw key; nothing to rewrite.")
    after = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return Rewrite(path, client.key, before, after, replaced, secrets)


_TABLE = re.compile(r"^\s*\[\s*mcp_servers\.(\"[^\"]+\"|[A-Za-z0-9_-]+)(?:\.[^\]]*)?\]\s*(?:#.*)?$")
_ANY_TABLE = re.compile(r"^\s*\[")


def _plan_toml(
    path: Path, before: str, *, url: str, token: str | None, only: list[str] | None
) -> Rewrite:
    """Codex's config.toml, edited as text so that its comments and other tables stay:
    the `[mcp_servers.NAME]` tables (and their sub-tables) that hold a raw key are taken
    out and one `[mcp_servers.grantry]` table is added. The result is parsed again."""
    try:
        data = tomllib.loads(before)
    except tomllib.TOMLDecodeError as exc:
        raise CannotRewrite(f"{path} is not valid TOML ({exc}); nothing was changed.") from None
    table = data.get("mcp_servers")
    servers: dict[str, Any] = table if isinstance(table, dict) else {}
    doomed = {n for n, s in servers.items() if _raw_keys(s) and (only is None or n in only)}
    if not doomed:
        raise CannotRewrite(f"No MCP server entry in {path} holds a raw key; nothing to rewrite.")
    secrets = [k for n in doomed for k in _raw_keys(servers[n])]
    kept: list[str] = []
    dropping = False
    for line in before.splitlines(keepends=True):
        table = _TABLE.match(line)
        if table:
            dropping = table.group(1).strip('"') in doomed
        elif _ANY_TABLE.match(line):
            dropping = False
        if not dropping:
            kept.append(line)
    text = "".join(kept).rstrip("\n")
    after = (text + "\n\n" if text else "") + toml_entry(url, token)
    parsed = tomllib.loads(after)
    if set(doomed) & set(parsed.get("mcp_servers", {})) or any(s.value in after for s in secrets):
        raise CannotRewrite(
            f"{path} defines these servers in a form a text edit cannot take out (an inline "
            "table?); replace them by hand with `grantry mcp-config --client codex`."
        )
    return Rewrite(path, "codex", before, after, sorted(doomed), secrets)


def apply(rewrite: Rewrite) -> Path:
    """Keep a backup next to the file (same permissions), then write the new content."""
    backup = rewrite.path.with_name(
        f"{rewrite.path.name}.grantry-backup-{time.strftime('%Y%m%d%H%M%S')}"
    )
    shutil.copy2(rewrite.path, backup)
    rewrite.path.write_text(rewrite.after, encoding="utf-8")
    return backup
