"""Import MCP servers from the configs agents use today (Claude Desktop and Cursor's
`mcpServers`, VS Code's `servers` or `mcp.servers`).

Each entry becomes a proposal: a remote server (`url`, with any `headers`) or an npm
package run by `npx` (`command` + `args`, with any `env`). A key found in `headers`
or `env` moves into Grantry's custody (the admin is told to rotate it: it sat in a
file on someone's machine), and the replacement block points the client at Grantry
with a worker token instead. Entries Grantry cannot run as they are (an unpinned
package, another command, the legacy SSE transport, a `${input:…}` placeholder) are
reported with the reason and skipped.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from apps.connections.gateway.services import HttpServer, StdioServer
from apps.connections.mcp_models import McpAuth
from apps.isolation.packages import PackageError, parse_package

MAX_CONFIG_BYTES = 200_000
# Each server is checked (its tools listed, up to GRANTRY_MCP_CALL_TIMEOUT) while the
# admin's request waits: a config names a handful; more are refused, not queued.
MAX_SERVERS = 10
_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")


@dataclass
class Proposal:
    key: str  # the entry's name in the config
    name: str  # the connection name proposed
    server: HttpServer | StdioServer | None = field(default=None, repr=False)
    moved: list[str] = field(default_factory=list)  # secret names moved into custody
    problem: str = ""

    @property
    def summary(self) -> str:
        if isinstance(self.server, HttpServer):
            return self.server.url
        if isinstance(self.server, StdioServer):
            return f"npx -y {self.server.package}"
        return ""


class ConfigError(ValueError):
    pass


def _slug(key: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", key.lower()).strip("-_")
    slug = re.sub(r"_{2,}", "_", slug)
    return (slug or "mcp-server")[:60]


def _servers(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise ConfigError("The config is not a JSON object.")
    candidates = [config.get("mcpServers"), config.get("servers")]
    if isinstance(config.get("mcp"), dict):  # VS Code's settings.json
        candidates.append(config["mcp"].get("servers"))
    for found in candidates:
        if isinstance(found, dict) and found:
            return found
    raise ConfigError(
        'No servers found: expected "mcpServers" (Claude Desktop, Cursor) or "servers" (VS Code).'
    )


def _remote(entry: dict[str, Any], proposal: Proposal) -> None:
    kind = str(entry.get("type") or entry.get("transport") or "http").lower()
    if kind == "sse":
        proposal.problem = (
            "The legacy HTTP+SSE transport is not supported; use the server's Streamable HTTP URL."
        )
        return
    url = str(entry.get("url") or entry.get("serverUrl"))
    headers = entry.get("headers") or {}
    if not isinstance(headers, dict) or len(headers) > 1:
        proposal.problem = "Only one credential header can be moved into Grantry."
        return
    if not headers:
        proposal.server = HttpServer(url=url, auth=McpAuth.NONE)
        return
    [(name, value)] = headers.items()
    value = str(value)
    if _PLACEHOLDER.search(value):
        proposal.problem = f"The {name} header is a placeholder; enter the key in Grantry."
        return
    prefix = ""
    for scheme in ("Bearer ", "Token ", "Basic "):
        if value.startswith(scheme):
            prefix, value = scheme, value[len(scheme) :]
    proposal.server = HttpServer(
        url=url, auth=McpAuth.STATIC, secret=value, header_name=str(name), header_prefix=prefix
    )
    proposal.moved.append(str(name))


def _local(entry: dict[str, Any], proposal: Proposal) -> None:
    command = str(entry.get("command"))
    args = [str(a) for a in entry.get("args") or []]
    if command != "npx":
        proposal.problem = f"Grantry runs pinned npm packages (npx); {command!r} is not supported."
        return
    try:
        spec = parse_package(shlex.join(["npx", *args]))
    except PackageError as exc:
        proposal.problem = str(exc)
        return
    env = {str(k): str(v) for k, v in (entry.get("env") or {}).items()}
    placeholders = [k for k, v in env.items() if _PLACEHOLDER.search(v)]
    if placeholders:
        proposal.problem = f"{', '.join(placeholders)} are placeholders; enter them in Grantry."
        return
    proposal.server = StdioServer(package=str(spec), args=spec.args, env=env)
    proposal.moved.extend(sorted(env))


def parse_config(text: str) -> list[Proposal]:
    """The proposals of a pasted config (ConfigError when it is not one)."""
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise ConfigError("The config is too large.")
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"The config is not valid JSON: {exc}.") from None
    servers = _servers(config)
    if len(servers) > MAX_SERVERS:
        raise ConfigError(
            f"The config names {len(servers)} servers; import at most {MAX_SERVERS} at once."
        )
    proposals = []
    for key, entry in servers.items():
        proposal = Proposal(key=str(key)[:100], name=_slug(str(key)))
        if not isinstance(entry, dict):
            proposal.problem = "The entry is not an object."
        elif entry.get("url") or entry.get("serverUrl"):
            _remote(entry, proposal)
        elif entry.get("command"):
            _local(entry, proposal)
        else:
            proposal.problem = "The entry has neither a url nor a command."
        proposals.append(proposal)
    return proposals


def replacement_block(names: list[str]) -> str:
    """The config that points an MCP client at Grantry instead: one entry for every
    allowed tool, and one per imported server for clients configured per server."""
    base = settings.GRANTRY_BASE_URL
    header = {"Authorization": "Bearer <your worker token>"}
    servers: dict[str, Any] = {"grantry": {"type": "http", "url": f"{base}/mcp", "headers": header}}
    for name in names:
        servers[f"grantry-{name}"] = {
            "type": "http",
            "url": f"{base}/mcp/c/{name}",
            "headers": header,
        }
    return json.dumps({"mcpServers": servers}, indent=2)
