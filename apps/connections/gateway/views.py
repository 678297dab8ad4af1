"""Dashboard pages of MCP connections: add a server, its health and tools (pinned,
changed or new, with calls per tool), review a changed definition and approve it,
refresh the tool list. Members read; admins write. The organization comes from the
URL (`OrgViewMixin`), never from a form."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.views import View
from django.views.generic import TemplateView

from apps.audit.selectors import calls_per_tool
from apps.connections import custody
from apps.connections.gateway.forms import McpServerForm, connection_name_problem
from apps.connections.gateway.importer import ConfigError, Proposal, parse_config, replacement_block
from apps.connections.gateway.oauth import mcp_oauth_start
from apps.connections.gateway.services import mcp_connection_create
from apps.connections.gateway.tools import (
    GatewayProblem,
    ToolApprovalRefused,
    mcp_tool_approve,
    mcp_tools_refresh,
)
from apps.connections.mcp_models import MCP_PROVIDER_KEY, McpAuth, McpTool, McpToolState
from apps.connections.models import Connection
from apps.organizations.models import OrgRole
from apps.organizations.tenancy import OrgViewMixin


def agent_urls(connection: Connection) -> dict[str, str]:
    base = settings.GRANTRY_BASE_URL
    return {"all": f"{base}/mcp", "one": f"{base}/mcp/c/{connection.name}"}


@dataclass(frozen=True)
class ToolRow:
    tool: McpTool
    description: str  # the approved one while pinned, else as listed
    calls: int


class _McpConnectionMixin(OrgViewMixin):
    kwargs: dict[str, Any]

    def scope_queryset(self) -> Any:
        return self.tenant_rows(Connection).filter(
            provider_key=MCP_PROVIDER_KEY, mcp_server__isnull=False
        )

    def connection(self) -> Connection:
        found = (
            self.scope_queryset().select_related("mcp_server").filter(pk=self.kwargs["pk"]).first()
        )
        if found is None:
            raise Http404("No such MCP connection.")
        return found


class McpAddView(OrgViewMixin, TemplateView):
    template_name = "connections/mcp_add.html"
    required_role = OrgRole.ADMIN
    write_role = OrgRole.ADMIN

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        # The import page links here with a server's name and URL filled in.
        initial = {k: self.request.GET[k][:500] for k in ("name", "url") if k in self.request.GET}
        context.setdefault("form", McpServerForm(initial=initial, organization=self.organization))
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = McpServerForm(request.POST, organization=self.organization)
        if form.is_valid():
            server = form.server()
            try:
                if getattr(server, "auth", "") == McpAuth.OAUTH:
                    if not request.session.session_key:
                        request.session.save()
                    url = mcp_oauth_start(
                        organization=self.organization,
                        name=form.cleaned_data["name"],
                        url=form.cleaned_data["url"].strip(),
                        actor=request.user,
                        session_key=request.session.session_key or "",
                    )
                    return HttpResponseRedirect(url)
                connection, report = mcp_connection_create(
                    organization=self.organization,
                    name=form.cleaned_data["name"],
                    server=server,
                    actor=request.user,
                )
            except GatewayProblem as problem:
                form.add_error(None, f"{problem.message} Nothing was saved.")
            else:
                messages.success(
                    request,
                    f"Added '{connection.name}': {report.total} tools listed. Approve the "
                    "ones agents may use; roles then decide who calls them.",
                )
                return redirect(
                    "connections:mcp-detail", org_slug=self.organization.slug, pk=connection.pk
                )
        return self.render_to_response(self.get_context_data(form=form), status=400)


class McpDetailView(_McpConnectionMixin, TemplateView):
    template_name = "connections/mcp_detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        connection = self.connection()
        calls = calls_per_tool(self.organization, connection_id=connection.pk)
        tools = list(self.tenant_rows(McpTool).filter(connection=connection))
        order: dict[str, int] = {"changed": 0, "new": 1, "approved": 2}
        tools.sort(key=lambda t: (order.get(t.state, 3), t.name))
        rows = []
        for tool in tools:
            shown = tool.approved_definition if tool.state == McpToolState.APPROVED else None
            description = str((shown or tool.definition).get("description") or "")
            rows.append(ToolRow(tool=tool, description=description, calls=calls.get(tool.name, 0)))
        context.update(
            connection=connection,
            server=connection.mcp_server,
            tools=rows,
            new_tools=[t for t in tools if t.state == McpToolState.NEW],
            counts={s: sum(t.state == s for t in tools) for s in McpToolState.values},
            can_manage=self.membership.can_manage(),
            urls=agent_urls(connection),
            env_names=connection.mcp_server.env_names,
        )
        return context


class McpRefreshView(_McpConnectionMixin, View):
    required_role = OrgRole.ADMIN
    write_role = OrgRole.ADMIN

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        connection = self.connection()
        try:
            report = mcp_tools_refresh(connection_id=connection.pk)
        except (GatewayProblem, custody.NeedsReauth) as exc:
            messages.error(request, f"Could not list the tools: {exc}")
        else:
            messages.success(
                request,
                f"{report.total} tools listed: {len(report.new)} new, {len(report.changed)} "
                f"changed, {len(report.removed)} removed.",
            )
        return redirect("connections:mcp-detail", org_slug=self.organization.slug, pk=connection.pk)


def _pretty(definition: dict[str, Any] | None) -> list[str]:
    return json.dumps(definition or {}, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


class McpToolView(_McpConnectionMixin, TemplateView):
    """One tool: its definition (and what changed since approval); approve it."""

    template_name = "connections/mcp_tool.html"
    write_role = OrgRole.ADMIN

    def tool(self) -> McpTool:
        connection = self.connection()
        tool = (
            self.tenant_rows(McpTool).filter(connection=connection, pk=self.kwargs["tool"]).first()
        )
        if tool is None:
            raise Http404("No such tool.")
        return tool

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        tool = self.tool()
        diff = []
        if tool.approved_definition is not None and tool.digest != tool.approved_digest:
            diff = list(
                difflib.unified_diff(
                    _pretty(tool.approved_definition),
                    _pretty(tool.definition),
                    "approved",
                    "listed now",
                    lineterm="",
                )
            )
        context.update(
            tool=tool,
            connection=tool.connection,
            definition="\n".join(_pretty(tool.definition)),
            diff=diff,
            can_manage=self.membership.can_manage(),
        )
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        tool = self.tool()
        try:
            mcp_tool_approve(
                tool_id=tool.pk,
                organization_id=self.organization.pk,
                digest=request.POST.get("digest", "")[:64],
                actor=request.user,
            )
        except ToolApprovalRefused as exc:
            messages.error(request, str(exc))
            return redirect(request.path)
        messages.success(request, f"Approved '{tool.name}' as listed; calls are pinned to it.")
        return redirect(
            "connections:mcp-detail", org_slug=self.organization.slug, pk=tool.connection_id
        )


class McpApproveNewView(_McpConnectionMixin, View):
    """Approve every new tool as shown on the page (each pinned and audited)."""

    required_role = OrgRole.ADMIN
    write_role = OrgRole.ADMIN

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        connection = self.connection()
        approved, refused = 0, []
        for pair in request.POST.getlist("tool")[:1000]:
            tool_id, _, digest = pair.partition(":")
            if not tool_id.isdigit():
                continue
            try:
                mcp_tool_approve(
                    tool_id=int(tool_id),
                    organization_id=self.organization.pk,
                    digest=digest[:64],
                    actor=request.user,
                )
            except (ToolApprovalRefused, McpTool.DoesNotExist) as exc:
                refused.append(str(exc))
            else:
                approved += 1
        messages.success(request, f"Approved {approved} tools.")
        for reason in refused[:5]:
            messages.error(request, reason)
        return redirect("connections:mcp-detail", org_slug=self.organization.slug, pk=connection.pk)


class McpImportView(OrgViewMixin, TemplateView):
    """Paste a Claude Desktop / Cursor / VS Code config: each server it names is added
    (checked first, its key moved into custody), and the block that points the client
    at Grantry instead is shown."""

    template_name = "connections/mcp_import.html"
    required_role = OrgRole.ADMIN
    write_role = OrgRole.ADMIN

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            proposals = parse_config(request.POST.get("config", ""))
        except ConfigError as exc:
            return self.render_to_response(self.get_context_data(error=str(exc)), status=400)
        results, added = [], []
        for proposal in proposals:
            results.append((proposal, self._add(proposal)))
            if results[-1][1] == "added":
                added.append(proposal.name)
        context = self.get_context_data(
            results=results, added=added, replacement=replacement_block(added) if added else ""
        )
        return self.render_to_response(context)

    def _add(self, proposal: Proposal) -> str:
        if proposal.server is None:
            return proposal.problem
        problem = connection_name_problem(self.organization, proposal.name)
        if problem:
            return problem
        try:
            mcp_connection_create(
                organization=self.organization,
                name=proposal.name,
                server=proposal.server,
                actor=self.request.user,
            )
        except GatewayProblem as failure:
            if failure.code == "credential_rejected" and not proposal.moved:
                return "needs_oauth"
            return failure.message
        return "added"
