"""Settings → MCP clients: an organization's OAuth client policy, and every grant
(client, worker, approver, last use) with revoke behind the dashboard's confirmation."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import Max
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views import View
from django.views.generic import TemplateView

from apps.core.confirm import Confirmation, confirmation_page, is_confirmed
from apps.mcpauth import services
from apps.mcpauth.forms import PolicyForm
from apps.mcpauth.models import McpGrant
from apps.organizations.models import OrgRole
from apps.organizations.tenancy import OrgViewMixin
from apps.workers.models import TrustPolicy, TrustPreset


class McpSettingsView(OrgViewMixin, TemplateView):
    """Settings → MCP clients: the policy, and every grant with revoke."""

    template_name = "mcpauth/settings.html"
    required_role = OrgRole.ADMIN

    def scope_queryset(self) -> Any:
        return self.tenant_rows(McpGrant)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        policy = services.policy_for(self.organization)
        context.setdefault("form", PolicyForm(instance=policy))
        context["grants"] = (
            self.scope_queryset()
            .select_related("worker", "role", "approved_by", "revoked_by")
            .annotate(last_used_at=Max("issued__worker_token__last_used_at"))
            .order_by("revoked_at", "-created_at")[:200]
        )
        context["idjag_policies"] = (
            self.tenant_rows(TrustPolicy)
            .filter(preset=TrustPreset.IDJAG)
            .select_related("worker", "role")
            .order_by("id")[:200]
        )
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = PolicyForm(request.POST, instance=services.policy_for(self.organization))
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(form=form), status=400)
        services.policy_update(
            organization=self.organization,
            actor=request.user,
            **{f: form.cleaned_data[f] for f in PolicyForm.Meta.fields},
        )
        messages.success(request, "MCP client settings saved.")
        return redirect("mcpauth:settings", org_slug=self.organization.slug)


class GrantRevokeView(OrgViewMixin, View):
    required_role = OrgRole.ADMIN

    def scope_queryset(self) -> Any:
        return self.tenant_rows(McpGrant)

    def post(self, request: HttpRequest, org_slug: str, grant_id: int) -> HttpResponse:
        grant = get_object_or_404(self.scope_queryset().select_related("worker"), pk=grant_id)
        if not grant.is_active():
            raise Http404("This grant is already revoked.")
        if not is_confirmed(request):
            live = grant.issued.filter(worker_token__revoked_at__isnull=True).count()
            confirmation = Confirmation(
                title=f"Revoke {grant.label} as {grant.worker.name}?",
                stops=[
                    f"{grant.label} can no longer act as worker {grant.worker.name}: "
                    f"its {live} unrevoked token(s) stop working on the next call, "
                    "and it cannot refresh them.",
                    "To connect it again, a person goes through the consent page again.",
                ],
                button="Revoke",
                cancel_url=reverse("mcpauth:settings", kwargs={"org_slug": org_slug}),
            )
            return confirmation_page(
                request,
                confirmation,
                {"organization": self.organization, "membership": self.membership},
            )
        services.grant_revoke(grant=grant, actor=request.user, reason="Revoked by an admin")
        messages.success(request, f"{grant.label} can no longer act as {grant.worker.name}.")
        return redirect("mcpauth:settings", org_slug=self.organization.slug)
