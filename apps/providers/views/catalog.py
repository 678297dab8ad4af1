"""Dashboard pages of the catalog: browse providers and actions (every member),
define custom providers and actions (admins)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.generic import FormView, TemplateView

from apps.organizations.models import OrgRole
from apps.organizations.tenancy import OrgViewMixin
from apps.providers.catalog import Action
from apps.providers.forms import CustomActionForm, CustomProviderForm
from apps.providers.models import CustomAction, CustomProvider
from apps.providers.registry import UnknownProvider, all_providers, get_provider
from apps.providers.services import (
    EDITABLE_FIELDS,
    custom_action_create,
    custom_action_delete,
    custom_provider_create,
    custom_provider_delete,
    custom_provider_update,
)


def _matches(action: Action, query: str, action_class: str) -> bool:
    if action_class and action.action_class != action_class:
        return False
    if not query:
        return True
    return query in action.name.lower() or query in action.description.lower()


def _apply_validation_error(form: Any, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for field, errors in error.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, error)


class CatalogView(OrgViewMixin, TemplateView):
    """Every provider and its actions, filterable; the reference for writing roles."""

    template_name = "providers/catalog.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        query = self.request.GET.get("q", "").strip().lower()[:100]
        action_class = self.request.GET.get("class", "")
        if action_class not in ("", "read", "write"):
            action_class = ""
        entries = []
        total = 0
        for provider in all_providers(organization=self.organization):
            provider_hit = (
                not query or query in provider.display_name.lower() or (query in provider.key)
            )
            actions = [
                a
                for a in provider.actions
                if _matches(a, "" if provider_hit else query, action_class)
            ]
            if actions or (provider_hit and not action_class):
                entries.append({"provider": provider, "actions": actions})
                total += len(actions)
        context.update(
            entries=entries,
            total_actions=total,
            query=self.request.GET.get("q", ""),
            action_class=action_class,
            can_manage=self.membership.can_manage(),
            filtered=bool(query or action_class),
        )
        return context


class ProviderDetailView(OrgViewMixin, TemplateView):
    template_name = "providers/detail.html"
    model = CustomProvider

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        try:
            provider = get_provider(self.kwargs["key"], organization=self.organization)
        except UnknownProvider:
            raise Http404("No such provider.") from None
        context.update(
            provider=provider,
            actions=[_action_view(a) for a in provider.actions],
            can_manage=self.membership.can_manage(),
            custom=(
                self.scope_queryset().filter(slug=provider.key.removeprefix("custom-")).first()
                if provider.is_custom
                else None
            ),
        )
        return context


def _action_view(action: Action) -> dict[str, Any]:
    schema = action.input_schema or {}
    required = set(schema.get("required") or [])
    fields = [
        {
            "name": name,
            "type": _type_label(prop),
            "required": name in required,
            "description": prop.get("description", "") if isinstance(prop, dict) else "",
        }
        for name, prop in (schema.get("properties") or {}).items()
    ]
    return {
        "action": action,
        "fields": fields,
        "schema_json": json.dumps(schema, indent=2, ensure_ascii=False),
    }


def _type_label(prop: Any) -> str:
    if not isinstance(prop, dict):
        return "any"
    if "enum" in prop:
        return "one of: " + ", ".join(str(v) for v in prop["enum"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type_label(prop.get('items'))}"
    return str(kind)


class _CustomProviderMixin(OrgViewMixin):
    """Admin pages for one of this organization's custom providers."""

    required_role = OrgRole.ADMIN
    model = CustomProvider
    custom: CustomProvider
    kwargs: dict[str, Any]

    def get_custom(self) -> CustomProvider:
        return get_object_or_404(self.scope_queryset(), slug=self.kwargs["slug"])

    def detail_url(self, provider: CustomProvider) -> str:
        return reverse(
            "providers:detail",
            kwargs={"org_slug": self.organization.slug, "key": provider.key},
        )


class CustomProviderCreateView(_CustomProviderMixin, FormView):
    template_name = "providers/custom_provider_form.html"
    form_class = CustomProviderForm

    def form_valid(self, form: CustomProviderForm) -> HttpResponse:
        try:
            provider = custom_provider_create(
                organization=self.organization,
                actor=self.request.user,
                **form.cleaned_data,
            )
        except ValidationError as error:
            _apply_validation_error(form, error)
            return self.form_invalid(form)
        messages.success(
            self.request,
            f"Custom provider {provider.display_name} created. Add its actions below.",
        )
        return HttpResponseRedirect(self.detail_url(provider))


class CustomProviderUpdateView(_CustomProviderMixin, FormView):
    template_name = "providers/custom_provider_form.html"
    form_class = CustomProviderForm

    def get_form_kwargs(self) -> dict[str, Any]:
        kwargs = super().get_form_kwargs()
        self.custom = self.get_custom()
        # Validate a copy, so the page still names the saved provider on errors.
        kwargs["instance"] = self.tenant_rows(CustomProvider).get(pk=self.custom.pk)
        return kwargs

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["custom"] = self.custom
        return context

    def form_valid(self, form: CustomProviderForm) -> HttpResponse:
        changes = {k: v for k, v in form.cleaned_data.items() if k in EDITABLE_FIELDS}
        try:
            provider = custom_provider_update(
                provider=self.custom,
                actor=self.request.user,
                changes=changes,
            )
        except ValidationError as error:
            _apply_validation_error(form, error)
            return self.form_invalid(form)
        messages.success(self.request, f"{provider.display_name} saved.")
        return HttpResponseRedirect(self.detail_url(provider))


class CustomProviderDeleteView(_CustomProviderMixin, TemplateView):
    template_name = "providers/confirm_delete.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        custom = self.get_custom()
        context.update(
            custom=custom,
            thing=f"the custom provider {custom.display_name} ({custom.key})",
            consequence=(
                f"Its {custom.actions.count()} action(s) disappear from the catalog; role "
                "rules that name them stop matching."
            ),
            cancel_url=self.detail_url(custom),
        )
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        custom = self.get_custom()
        try:
            custom_provider_delete(provider=custom, actor=request.user)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
            return HttpResponseRedirect(self.detail_url(custom))
        messages.success(request, f"Custom provider {custom.display_name} deleted.")
        return HttpResponseRedirect(
            reverse("providers:catalog", kwargs={"org_slug": self.organization.slug})
        )


class CustomActionCreateView(_CustomProviderMixin, FormView):
    template_name = "providers/custom_action_form.html"
    form_class = CustomActionForm

    def get_form_kwargs(self) -> dict[str, Any]:
        kwargs = super().get_form_kwargs()
        self.custom = self.get_custom()
        kwargs["provider"] = self.custom
        return kwargs

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["custom"] = self.custom
        return context

    def form_valid(self, form: CustomActionForm) -> HttpResponse:
        try:
            action = custom_action_create(
                provider=self.custom,
                actor=self.request.user,
                **form.cleaned_data,
            )
        except ValidationError as error:
            _apply_validation_error(form, error)
            return self.form_invalid(form)
        messages.success(self.request, f"Action {self.custom.key}.{action.name} added.")
        return HttpResponseRedirect(self.detail_url(self.custom))


class CustomActionDeleteView(_CustomProviderMixin, TemplateView):
    template_name = "providers/confirm_delete.html"

    def get_action(self) -> CustomAction:
        custom = self.get_custom()
        return get_object_or_404(custom.actions.all(), name=self.kwargs["name"])

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        action = self.get_action()
        context.update(
            thing=f"the action {action.provider.key}.{action.name}",
            consequence="Agents can no longer call it; role rules that name it stop matching.",
            cancel_url=self.detail_url(action.provider),
        )
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        action = self.get_action()
        provider = action.provider
        custom_action_delete(action=action, actor=request.user)
        messages.success(request, f"Action {provider.key}.{action.name} deleted.")
        return HttpResponseRedirect(self.detail_url(provider))


__all__ = [
    "CatalogView",
    "CustomActionCreateView",
    "CustomActionDeleteView",
    "CustomProviderCreateView",
    "CustomProviderDeleteView",
    "CustomProviderUpdateView",
    "ProviderDetailView",
]
