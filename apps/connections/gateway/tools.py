"""An upstream's tools, pinned: list them, keep each definition's digest, and let
only what an admin approved be called.

`mcp_tools_refresh()` lists the server's tools (through `client.list_tools`) and
syncs the `McpTool` rows under a lock: a new tool is recorded as *new* (not
callable until approved); an approved tool whose definition (name, title,
description, input and output schema, annotations) no longer has the approved
digest becomes *changed* — the "rug pull" — and calls to it are refused until an
admin reviews the difference and approves again (`mcp_tool_approve`); a tool the
server stopped listing becomes *removed*. Every approval and every detected change
writes an audit event in the same transaction.

Before a call, `mcp_tool_for_call()` makes sure Grantry's view of the server's
tools is no older than GRANTRY_MCP_TOOLS_MAX_AGE seconds (and re-reads it at once
after the server sent `notifications/tools/list_changed`), so a definition changed
upstream is blocked before the call goes out. tools/list is a read without side
effects, so this maintenance read may precede the call's attempt record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit.models import Outcome
from apps.audit.services import audit_record
from apps.connections import credentials
from apps.connections.gateway import client
from apps.connections.gateway.client import Listing, Upstream, UpstreamError
from apps.connections.mcp_models import (
    McpServer,
    McpTool,
    McpToolState,
    McpTransport,
    definition_digest,
    tool_definition,
)
from apps.connections.models import Connection
from apps.isolation.packages import PackageError, locate, parse_package
from apps.isolation.sandbox import SandboxError, sandbox_command

MAX_DEFINITION_BYTES = 100_000
MAX_NAMES_IN_EVENT = 50


class GatewayProblem(Exception):
    """Why an MCP connection cannot be used right now (a message for admins and agents)."""

    def __init__(self, code: str, message: str, *, status: int = 502) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def upstream_for(connection: Connection, server: McpServer) -> Upstream:
    """How to reach the server with the connection's credential (may refresh an
    OAuth token first: credentials.mcp_auth_for). Raises custody.NeedsReauth or
    GatewayProblem."""
    auth = credentials.mcp_auth_for(connection, server)
    if server.transport == McpTransport.HTTP:
        return Upstream(
            connection_id=connection.pk,
            transport="http",
            label=client.host_label(server.url),
            url=server.url,
            headers=auth.headers,
            fingerprint=auth.fingerprint,
        )
    try:
        spec = parse_package(server.package, list(server.args or ()))
        command = sandbox_command(locate(spec), secrets=auth.env, network=server.network)
    except (PackageError, SandboxError) as exc:
        raise GatewayProblem("connection_misconfigured", str(exc), status=409) from None
    return Upstream(
        connection_id=connection.pk,
        transport="stdio",
        label=str(spec),
        command=command,
        fingerprint=auth.fingerprint,
    )


@dataclass
class SyncReport:
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # names or definitions refused
    total: int = 0


def _record_failure(server: McpServer, message: str) -> None:
    server.last_error = message[:300]
    server.last_error_at = timezone.now()
    server.save(update_fields=["last_error", "last_error_at"])


def mcp_tools_refresh(*, connection_id: int) -> SyncReport:
    """List the server's tools and sync the pinned rows. Raises GatewayProblem (the
    failure is also kept as the server's health) or custody.NeedsReauth."""
    connection = Connection.objects.select_related("mcp_server").get(pk=connection_id)
    server = connection.mcp_server
    try:
        listing = client.list_tools(upstream_for(connection, server))
    except UpstreamError as exc:
        _record_failure(server, exc.message)
        raise GatewayProblem(exc.code, exc.message, status=exc.status) from None
    except GatewayProblem as exc:
        _record_failure(server, exc.message)
        raise
    return _sync(connection, listing)


def _valid(tool: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(name, pinned definition) of a listed tool Grantry can keep, or None: a name MCP
    would not allow, a definition past MAX_DEFINITION_BYTES, or one PostgreSQL cannot
    store (a NUL or a lone surrogate anywhere in it)."""
    name = tool.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 128 or not name.isprintable():
        return None
    definition = tool_definition(tool)
    text = json.dumps(definition, ensure_ascii=False)
    if len(text) > MAX_DEFINITION_BYTES or "\\u0000" in text:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return name, definition


@transaction.atomic
def _sync(connection: Connection, listing: Listing) -> SyncReport:
    now = timezone.now()
    server = McpServer.objects.select_for_update().get(pk=connection.pk)
    rows = {t.name: t for t in McpTool.objects.select_for_update().filter(connection=connection)}
    report = SyncReport(total=len(listing.tools))
    seen: set[str] = set()
    for tool in listing.tools:
        valid = _valid(tool)
        if valid is None or valid[0] in seen:
            report.skipped.append(str(tool.get("name"))[:128])
            continue
        name, definition = valid
        seen.add(name)
        digest = definition_digest(definition)
        row = rows.get(name)
        if row is None:
            McpTool.objects.create(
                organization_id=connection.organization_id,
                connection=connection,
                name=name,
                definition=definition,
                digest=digest,
                last_seen_at=now,
            )
            report.new.append(name)
            continue
        _relisted(connection, row, definition, digest, report=report, now=now)
    # Unchanged tools cost no write each: one statement marks them all as seen.
    McpTool.objects.filter(connection=connection, name__in=seen).update(last_seen_at=now)
    for name, row in rows.items():
        if name not in seen and row.state != McpToolState.REMOVED:
            row.state = McpToolState.REMOVED
            row.changed_at = now
            row.save(update_fields=["state", "changed_at", "updated_at"])
            report.removed.append(name)
    if report.new or report.removed:
        audit_record(
            action="mcp.tools_listed",
            organization_id=connection.organization_id,
            target=connection,
            connection_id=connection.pk,
            provider=connection.provider_key,
            metadata={
                "new": report.new[:MAX_NAMES_IN_EVENT],
                "removed": report.removed[:MAX_NAMES_IN_EVENT],
                "new_count": len(report.new),
                "removed_count": len(report.removed),
                "tools": report.total,
            },
        )
    server.tools_listed_at = server.last_ok_at = now
    server.protocol_version = listing.protocol_version[:20]
    server.server_name = listing.server_name
    server.server_version = listing.server_version
    server.save()
    return report


def _relisted(
    connection: Connection,
    row: McpTool,
    definition: dict[str, Any],
    digest: str,
    *,
    report: SyncReport,
    now: Any,
) -> None:
    """A known tool listed again: its state from its digest against the approved one
    (a new change audited once), saved only when something changed."""
    was = (row.state, row.digest)
    row.definition, row.digest = definition, digest
    if not row.approved_digest:
        row.state = McpToolState.NEW
    elif digest == row.approved_digest:
        row.state = McpToolState.APPROVED
    else:
        row.state = McpToolState.CHANGED
        if was[0] != McpToolState.CHANGED:
            row.changed_at = now
            report.changed.append(row.name)
            _audit_change(connection, row)
    if (row.state, row.digest) != was:
        row.save()


def _changed_fields(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def _audit_change(connection: Connection, tool: McpTool) -> None:
    audit_record(
        action="mcp.tool_changed",
        organization_id=connection.organization_id,
        target=connection,
        outcome=Outcome.FAILURE,
        connection_id=connection.pk,
        provider=connection.provider_key,
        reason=(
            f"The server changed tool {tool.name!r} after it was approved; calls to it are "
            "refused until an admin approves the new definition."
        ),
        metadata={
            "tool": tool.name,
            "approved_digest": tool.approved_digest,
            "digest": tool.digest,
            "fields": _changed_fields(tool.approved_definition or {}, tool.definition),
        },
    )


class ToolApprovalRefused(Exception):
    pass


@transaction.atomic
def mcp_tool_approve(*, tool_id: int, organization_id: int, digest: str, actor: Any) -> McpTool:
    """Approve the definition the admin saw (`digest`): it becomes the pinned one."""
    tool = (
        McpTool.objects.for_organization(organization_id)
        .select_for_update()
        .select_related("connection")
        .get(pk=tool_id)
    )
    if tool.state == McpToolState.REMOVED:
        raise ToolApprovalRefused(f"The server no longer lists {tool.name!r}.")
    if tool.digest != digest:
        raise ToolApprovalRefused(
            f"The definition of {tool.name!r} changed since you looked at it; review it again."
        )
    previous = tool.approved_digest
    tool.approved_definition = tool.definition
    tool.approved_digest = digest
    tool.approved_at = timezone.now()
    tool.approved_by = actor if getattr(actor, "pk", None) else None
    tool.state = McpToolState.APPROVED
    tool.save()
    audit_record(
        action="mcp.tool_approved",
        organization_id=organization_id,
        actor=actor,
        target=tool.connection,
        connection_id=tool.connection_id,
        provider=tool.connection.provider_key,
        metadata={"tool": tool.name, "digest": digest, "previous_digest": previous},
    )
    return tool


def needs_listing(server: McpServer) -> bool:
    """Whether Grantry's view of the server's tools is too old to decide a call on."""
    if server.tools_listed_at is None or client.tools_changed(server.pk):
        return True
    age = timezone.now() - server.tools_listed_at
    return age >= timedelta(seconds=float(settings.GRANTRY_MCP_TOOLS_MAX_AGE))


def mcp_tool_for_call(connection: Connection, name: str, *, read: McpTool | None = None) -> McpTool:
    """The pinned tool `name` as it stands now, after re-reading the server's tools if
    Grantry's view is stale; GatewayProblem when it cannot be called. `read`: the row
    the caller already read (used when nothing was re-read since)."""
    server = connection.mcp_server
    tool = read
    if needs_listing(server):
        mcp_tools_refresh(connection_id=connection.pk)
        tool = None
    if tool is None:
        tool = McpTool.objects.filter(connection=connection, name=name).first()
    if tool is None or tool.state == McpToolState.REMOVED:
        raise GatewayProblem(
            "unknown_tool", f"The connection {connection.name!r} has no tool {name!r}.", status=404
        )
    if tool.state == McpToolState.CHANGED:
        raise GatewayProblem(
            "tool_changed",
            f"The server behind {connection.name!r} changed tool {name!r} after an admin "
            "approved it. Grantry refuses it until an admin reviews the change "
            "(Connections → the connection → Tools).",
            status=409,
        )
    if not tool.is_callable():
        raise GatewayProblem(
            "tool_not_approved",
            f"Tool {name!r} of {connection.name!r} is not approved yet; an admin approves "
            "it in Grantry (Connections → the connection → Tools).",
            status=403,
        )
    return tool
