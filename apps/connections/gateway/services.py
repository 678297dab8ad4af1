"""Adding an MCP server as a connection: by URL (no credential, a static bearer token
or API key header, or OAuth: `gateway.oauth`) or as a pinned stdio package with
credentials mapped to its environment.

Like an API-key connection, a server with a static credential is checked before it
is saved: Grantry lists its tools with that credential, and a server that refuses
it (or cannot be reached) saves nothing. The connection, its `McpServer` row and
the audit event commit together; the tools listed become *new* tools an admin then
approves (`gateway.tools.mcp_tool_approve`).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction

from apps.audit.services import audit_record
from apps.connections.gateway import client
from apps.connections.gateway.client import Upstream, UpstreamError
from apps.connections.gateway.tools import GatewayProblem, SyncReport, _sync
from apps.connections.mcp_models import MCP_PROVIDER_KEY, McpAuth, McpServer, McpTransport
from apps.connections.models import Connection
from apps.isolation.packages import PackageError, locate, parse_package
from apps.isolation.sandbox import SandboxError, env_name_problem, sandbox_command
from apps.organizations.models import Organization


@dataclass(frozen=True)
class HttpServer:
    url: str
    auth: str = McpAuth.NONE  # none, api_key (static header) or oauth2
    secret: str = field(default="", repr=False)
    header_name: str = "Authorization"
    header_prefix: str = "Bearer "


@dataclass(frozen=True)
class StdioServer:
    package: str  # "npx -y @scope/pkg@1.2.3 [args]" or "@scope/pkg@1.2.3"
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict, repr=False)  # name -> secret
    network: bool = False


def _upstream(server: HttpServer | StdioServer, check_id: int) -> Upstream:
    """The upstream to check before anything is saved, under a negative id of its own
    (no real connection's session is reused or closed by the check)."""
    if isinstance(server, HttpServer):
        headers = (
            {server.header_name or "Authorization": f"{server.header_prefix}{server.secret}"}
            if server.auth == McpAuth.STATIC
            else {}
        )
        return Upstream(
            connection_id=check_id,
            transport="http",
            label=client.host_label(server.url),
            url=server.url,
            headers=headers,
        )
    for name in server.env:
        problem = env_name_problem(name)
        if problem:
            raise GatewayProblem("invalid_input", problem, status=400)
    try:
        spec = parse_package(server.package, list(server.args))
        command = sandbox_command(locate(spec), secrets=dict(server.env), network=server.network)
    except (PackageError, SandboxError) as exc:
        raise GatewayProblem("invalid_input", str(exc), status=400) from None
    return Upstream(connection_id=check_id, transport="stdio", label=str(spec), command=command)


def mcp_connection_create(
    *,
    organization: Organization,
    name: str,
    server: HttpServer | StdioServer,
    actor: Any = None,
) -> tuple[Connection, SyncReport]:
    """Check the server (list its tools with the credential), then save the connection
    and its tools. GatewayProblem when the server cannot be used: nothing is saved."""
    check_id = -1 - secrets.randbelow(2**31)
    upstream = _upstream(server, check_id)
    try:
        listing = client.list_tools(upstream)
    except UpstreamError as exc:
        code = "credential_rejected" if exc.code == "upstream_unauthorized" else exc.code
        raise GatewayProblem(code, exc.message, status=400) from None
    finally:
        client.close_sessions(check_id)
    try:
        with transaction.atomic():
            connection = _save(organization=organization, name=name, server=server, actor=actor)
            report = _sync(connection, listing)
    except IntegrityError:  # the name was taken meanwhile
        raise GatewayProblem(
            "name_taken", f"A connection named '{name}' already exists.", status=400
        ) from None
    return connection, report


def _save(
    *, organization: Organization, name: str, server: HttpServer | StdioServer, actor: Any
) -> Connection:
    if isinstance(server, HttpServer):
        auth_type = server.auth
    else:
        auth_type = McpAuth.ENV if server.env else McpAuth.NONE
    connection = Connection(
        organization=organization,
        provider_key=MCP_PROVIDER_KEY,
        name=name,
        auth_type=auth_type,
        created_by=actor if getattr(actor, "pk", None) else None,
    )
    if isinstance(server, HttpServer) and server.auth == McpAuth.STATIC:
        connection.api_key = server.secret
    with transaction.atomic():  # a duplicate name must not poison the outer transaction
        connection.save()
    row = McpServer(connection=connection)
    if isinstance(server, HttpServer):
        row.transport = McpTransport.HTTP
        row.url = server.url
        row.header_name = server.header_name or "Authorization"
        row.header_prefix = server.header_prefix
    else:
        spec = parse_package(server.package, list(server.args))
        row.transport = McpTransport.STDIO
        row.package = str(spec)
        row.args = list(spec.args)
        row.env_names = sorted(server.env)
        row.env_secrets = json.dumps(server.env) if server.env else ""
        row.network = server.network
    row.save()
    audit_record(
        action="connection.created",
        organization=organization,
        actor=actor,
        target=connection,
        connection_id=connection.pk,
        provider=MCP_PROVIDER_KEY,
        metadata={
            "auth_type": auth_type,
            "mcp_transport": row.transport,
            "mcp_server": row.target,
            **({"env": row.env_names, "network": row.network} if row.package else {}),
        },
    )
    return connection
