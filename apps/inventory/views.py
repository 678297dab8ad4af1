"""Dashboard pages: the Inventory (the migration's figures, then every raw key found,
filtered by host, provider, state or file), one key with its places and its next step,
and the proposed role, edited before it is saved. The same services as the API."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.generic import TemplateView

from apps.connections import services as connections
from apps.inventory import selectors, services
from apps.inventory.models import Finding, FindingLocation, FindingState
from apps.organizations.models import OrgRole
from apps.organizations.tenancy import OrgViewMixin


class _Scope(OrgViewMixin):
    model = Finding
    required_role = OrgRole.REVIEWER
    write_role = OrgRole.ADMIN
    kwargs: dict[str, Any]

    def scope_queryset(self) -> QuerySet[Any]:
        return self.tenant_rows(Finding).select_related("connection", "role")

    def finding(self) -> Finding:
        return get_object_or_404(self.scope_queryset(), public_id=self.kwargs["finding_id"])

    def detail_url(self, finding: Finding) -> str:
        return reverse(
            "inventory:detail",
            kwargs={"org_slug": self.organization.slug, "finding_id": finding.public_id},
        )


class InventoryView(_Scope, TemplateView):
    template_name = "inventory/list.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        params = self.request.GET
        findings = self.scope_queryset().prefetch_related("locations")
        if params.get("state") in FindingState.values:
            findings = findings.filter(state=params["state"])
        if params.get("provider"):
            findings = findings.filter(provider_key=params["provider"])
        if params.get("host"):
            findings = findings.filter(locations__host=params["host"])
        if params.get("file"):
            findings = findings.filter(locations__file__contains=params["file"])
        context.update(
            summary=selectors.migration_summary(self.organization),
            findings=findings.distinct()[:500],
            states=FindingState.choices,
            filters={k: params.get(k, "") for k in ("state", "provider", "host", "file")},
        )
        return context


class NewKeyForm(forms.Form):
    api_key = forms.CharField(
        label="The new key",
        max_length=4000,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Made at the provider to replace the raw one. Checked with the provider "
        "before it is saved; the old key is held, encrypted, only until it is confirmed dead.",
    )


class FindingView(_Scope, TemplateView):
    template_name = "inventory/detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        finding = kwargs.get("finding") or self.finding()
        context.update(
            finding=finding,
            locations=self.tenant_rows(FindingLocation)
            .filter(finding=finding)
            .order_by("host", "file", "location"),
            new_key_form=kwargs.get("new_key_form") or NewKeyForm(),
            scope_use=selectors.scope_use(finding),
            can_manage=self.membership.can_manage(),
            states=FindingState,
        )
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        finding = self.finding()
        step = request.POST.get("step")
        try:
            if step == "new_key":
                form = NewKeyForm(request.POST)
                if not form.is_valid():
                    return self.render_to_response(
                        self.get_context_data(finding=finding, new_key_form=form), status=400
                    )
                services.finding_new_key(
                    finding=finding, api_key=form.cleaned_data["api_key"], actor=request.user
                )
                messages.success(
                    request,
                    "The connection has its new key; the old one is held "
                    "until you confirm it is rotated.",
                )
            elif step == "confirm_rotated":
                finding = services.finding_confirm_rotated(finding=finding, actor=request.user)
                messages.success(
                    request,
                    f"Confirmed: the provider refuses the old key. "
                    f"Now {finding.get_state_display().lower()}.",
                )
        except (ValidationError, services.StillLive) as exc:
            messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
        except (connections.CredentialRejected, connections.ProviderUnreachable) as exc:
            messages.error(request, f"{exc} Nothing was changed.")
        return HttpResponseRedirect(self.detail_url(finding))


class RoleProposalForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(
        max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    rules = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 18, "spellcheck": "false"}),
        help_text="JSON, one object per rule, as in the role editor's JSON view.",
    )

    def clean_rules(self) -> list[Any]:
        try:
            rules = json.loads(self.cleaned_data["rules"])
        except ValueError as exc:
            raise ValidationError(f"Not valid JSON: {exc}") from None
        if not isinstance(rules, list):
            raise ValidationError("The rules are a JSON list.")
        return rules


class RoleProposalView(_Scope, TemplateView):
    template_name = "inventory/role.html"
    required_role = OrgRole.ADMIN

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        finding = self.finding()
        proposal = selectors.role_proposal(finding)
        form = kwargs.get("form") or RoleProposalForm(
            initial={
                "name": proposal["name"],
                "description": proposal["description"],
                "rules": json.dumps(proposal["rules"], indent=2),
            }
        )
        context.update(finding=finding, form=form, note=proposal.get("note", ""))
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        finding = self.finding()
        form = RoleProposalForm(request.POST)
        if form.is_valid():
            try:
                role = services.finding_role_create(
                    finding=finding,
                    name=form.cleaned_data["name"],
                    description=form.cleaned_data["description"],
                    rules=form.cleaned_data["rules"],
                    actor=request.user,
                )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else "rules", errors)
            else:
                messages.success(request, f"Saved role '{role.name}'.")
                return HttpResponseRedirect(
                    reverse(
                        "policies:detail",
                        kwargs={"org_slug": self.organization.slug, "role_id": role.pk},
                    )
                )
        return self.render_to_response(self.get_context_data(form=form), status=400)
