"""Dashboard pages for roles: members read, admins write (OrgViewMixin)."""

from __future__ import annotations

import json
from typing import Any

import yaml
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views import View
from django.views.generic import DetailView, ListView, TemplateView

from apps.organizations.models import OrgRole
from apps.organizations.tenancy import OrgViewMixin, require_role
from apps.policies.evaluate import Call, describe_rule, evaluate
from apps.policies.forms import ActionRuleForm, DryRunForm, ProxyRuleForm, RoleForm
from apps.policies.least_privilege import least_privilege_params, least_privilege_report
from apps.policies.models import Role, Rule
from apps.policies.selectors import load_role_rules
from apps.policies.services import (
    role_create,
    role_delete,
    role_document,
    role_narrow,
    role_update,
    rule_add,
    rule_delete,
)
from apps.policies.simulation import (
    DEFAULT_DAYS,
    DocumentError,
    clean_days,
    role_simulate,
    rules_from_document,
)


class RoleScopeMixin(OrgViewMixin):
    model = Role
    kwargs: dict[str, Any]

    def scope_queryset(self) -> QuerySet[Role]:
        return Role.objects.for_organization(self.organization)

    def get_role(self) -> Role:
        return get_object_or_404(self.scope_queryset(), pk=self.kwargs["role_id"])

    def org_connections(self, provider_key: str | None = None) -> list[Any]:
        from apps.connections.models import Connection

        connections = Connection.objects.for_organization(self.organization)
        if provider_key is not None:
            connections = connections.filter(provider_key=provider_key)
        return list(connections.order_by("name"))

    def detail_url(self, role: Role) -> str:
        return reverse(
            "policies:detail", kwargs={"org_slug": self.organization.slug, "role_id": role.pk}
        )


class RoleAdminMixin(RoleScopeMixin):
    """Pages that only exist to change something: admins only, even to look."""

    required_role = OrgRole.ADMIN
    write_role = OrgRole.ADMIN


def _apply_service_errors(form: Any, exc: ValidationError) -> None:
    for key, msgs in exc.message_dict.items():
        target = key if key in form.fields else None
        for msg in msgs:
            form.add_error(target, msg)


class RoleListView(RoleScopeMixin, ListView):  # type: ignore[misc]
    template_name = "policies/role_list.html"
    context_object_name = "roles"

    def scope_queryset(self) -> QuerySet[Role]:
        return super().scope_queryset().annotate(rule_count=Count("rules")).order_by("name")


class RoleCreateView(RoleAdminMixin, TemplateView):
    template_name = "policies/role_form.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self.render_to_response(self.get_context_data(form=RoleForm()))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = RoleForm(request.POST)
        if form.is_valid():
            try:
                role = role_create(
                    organization=self.organization,
                    name=form.cleaned_data["name"],
                    description=form.cleaned_data["description"],
                    actor=request.user,
                    request=request,
                )
            except ValidationError as exc:
                _apply_service_errors(form, exc)
            else:
                messages.success(request, f"Role “{role.name}” created. Now add its rules.")
                return HttpResponseRedirect(self.detail_url(role))
        return self.render_to_response(self.get_context_data(form=form), status=400)


class RoleEditView(RoleAdminMixin, TemplateView):
    template_name = "policies/role_form.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        role = self.get_role()
        form = RoleForm(initial={"name": role.name, "description": role.description})
        return self.render_to_response(self.get_context_data(form=form, role=role))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        role = self.get_role()
        form = RoleForm(request.POST)
        if form.is_valid():
            try:
                role_update(
                    role=role,
                    name=form.cleaned_data["name"],
                    description=form.cleaned_data["description"],
                    actor=request.user,
                    request=request,
                )
            except ValidationError as exc:
                _apply_service_errors(form, exc)
            else:
                messages.success(request, "Role saved.")
                return HttpResponseRedirect(self.detail_url(role))
        return self.render_to_response(self.get_context_data(form=form, role=role), status=400)


class RoleDetailView(RoleScopeMixin, DetailView):
    template_name = "policies/role_detail.html"
    context_object_name = "role"
    pk_url_kwarg = "role_id"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        role = self.object
        rules = list(role.rules.select_related("connection").order_by("position", "id"))
        context["rules"] = [(rule, describe_rule(rule.to_spec())) for rule in rules]
        context["can_manage"] = self.membership.can_manage()
        context["dry_run_form"] = dry_run_form(self, None)
        return context


class RoleDeleteView(RoleAdminMixin, TemplateView):
    template_name = "policies/role_confirm_delete.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["role"] = self.get_role()
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        role = self.get_role()
        try:
            role_delete(role=role, actor=request.user, request=request)
        except ValidationError as exc:
            for msgs in exc.message_dict.values():
                for msg in msgs:
                    messages.error(request, msg)
            return HttpResponseRedirect(self.detail_url(role))
        messages.success(request, f"Role “{role.name}” deleted.")
        return HttpResponseRedirect(
            reverse("policies:list", kwargs={"org_slug": self.organization.slug})
        )


class RuleAddView(RoleAdminMixin, TemplateView):
    """Step 1 picks a provider (or a proxy rule); step 2 is that provider's rule form."""

    template_name = "policies/rule_form.html"

    def _providers(self) -> list[Any]:
        from apps.providers.registry import all_providers

        return all_providers(organization=self.organization)

    def _form(self, data: Any = None) -> tuple[str, Any, Any]:
        from apps.providers.registry import UnknownProvider, get_provider

        source = data if data is not None else self.request.GET
        if source.get("kind") == "proxy":
            return "proxy", None, ProxyRuleForm(data, connections=self.org_connections())
        key = source.get("provider") or ""
        if not key:
            return "pick", None, None
        try:
            provider = get_provider(key, organization=self.organization)
        except UnknownProvider:
            return "pick", None, None
        form = ActionRuleForm(
            data, provider=provider, connections=self.org_connections(provider.key)
        )
        return "action", provider, form

    def _render(self, step: str, provider: Any, form: Any, status: int = 200) -> HttpResponse:
        context = self.get_context_data(
            role=self.get_role(),
            step=step,
            provider=provider,
            form=form,
            providers=self._providers(),
        )
        return self.render_to_response(context, status=status)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._render(*self._form())

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        role = self.get_role()
        step, provider, form = self._form(request.POST)
        if form is None:
            return self._render("pick", None, None, status=400)
        if form.is_valid() and request.POST.get("simulate") == "1":
            # Before saving: what the role with this rule added would have done.
            current = [
                {k: v for k, v in rule.items() if k != "id"}
                for rule in role_document(role)["rules"]
            ]
            try:
                result = role_simulate(role=role, rules=[*current, form.to_rule()])
            except ValidationError as exc:
                form.add_service_errors(exc.message_dict)
            else:
                context = self.get_context_data(
                    role=role,
                    step=step,
                    provider=provider,
                    form=form,
                    providers=self._providers(),
                    simulation=result,
                )
                return self.render_to_response(context)
            return self._render(step, provider, form, status=400)
        if form.is_valid():
            try:
                rule_add(role=role, rule=form.to_rule(), actor=request.user, request=request)
            except ValidationError as exc:
                form.add_service_errors(exc.message_dict)
            else:
                messages.success(request, "Rule added.")
                return HttpResponseRedirect(self.detail_url(role))
        return self._render(step, provider, form, status=400)


class RuleDeleteView(RoleAdminMixin, View):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        role = self.get_role()
        rule = get_object_or_404(Rule.objects.filter(role=role), pk=kwargs["rule_id"])
        rule_delete(rule=rule, actor=request.user, request=request)
        messages.success(request, "Rule removed.")
        return HttpResponseRedirect(self.detail_url(role))


class RoleSourceView(RoleScopeMixin, TemplateView):
    """The role as YAML and JSON, read-only, for review (and for copying)."""

    template_name = "policies/role_source.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        role = self.get_role()
        document = role_document(role)
        fmt = request.GET.get("format")
        if fmt == "json":
            return HttpResponse(
                json.dumps(document, indent=2), content_type="application/json; charset=utf-8"
            )
        if fmt == "yaml":
            return HttpResponse(_yaml(document), content_type="text/plain; charset=utf-8")
        context = self.get_context_data(
            role=role, as_yaml=_yaml(document), as_json=json.dumps(document, indent=2)
        )
        return self.render_to_response(context)


def _yaml(document: dict[str, Any]) -> str:
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def dry_run_form(view: RoleScopeMixin, data: Any) -> DryRunForm:
    from apps.providers.registry import all_actions

    return DryRunForm(
        data,
        actions=all_actions(organization=view.organization),
        connections=view.org_connections(),
    )


class RoleDryRunView(RoleScopeMixin, TemplateView):
    """“Test a call”. A POST here changes nothing, so members may use it."""

    template_name = "policies/role_test.html"
    write_role = None

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        context = self.get_context_data(role=self.get_role(), form=dry_run_form(self, None))
        return self.render_to_response(context)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        from apps.providers.registry import validate_input

        role = self.get_role()
        form = dry_run_form(self, request.POST)
        decision = None
        input_errors: list[Any] = []
        if form.is_valid():
            data = form.cleaned_data
            conn = data["connection_obj"]
            if data["kind"] == "proxy":
                call = Call.for_proxy(
                    provider_key=conn.provider_key,
                    method=data["method"],
                    path=data["path"],
                    connection_id=conn.pk,
                    connection_name=conn.name,
                    role_name=role.name,
                )
            else:
                action = data["action_obj"]
                call = Call.for_action(
                    action_name=action.name,
                    action_class=str(action.action_class),
                    connection_id=conn.pk if conn else None,
                    connection_name=conn.name if conn else "",
                    input=data["input_value"],
                    role_name=role.name,
                )
                input_errors = list(validate_input(action, data["input_value"]))
            decision = evaluate(load_role_rules(role.pk), call)
        context = self.get_context_data(
            role=role, form=form, decision=decision, input_errors=input_errors
        )
        status = 200 if form.is_valid() else 400
        if request.headers.get("HX-Request"):
            return render(request, "policies/_test_result.html", context, status=status)
        return self.render_to_response(context, status=status)


class RoleSimulateView(RoleScopeMixin, TemplateView):
    """Edit the role's rules as YAML, see what they would have done to the last N days
    of its recorded calls, then (admins) save them through the role services."""

    template_name = "policies/role_simulate.html"
    required_role = OrgRole.REVIEWER  # the examples come from the audit trail
    write_role = None  # simulating changes nothing; saving checks for admin below

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        role = self.get_role()
        document = _yaml(role_document(role)["rules"]) if role.rules.exists() else "[]\n"
        return self.render_to_response(
            self.get_context_data(role=role, document=document, days=DEFAULT_DAYS)
        )

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        role = self.get_role()
        document = request.POST.get("document", "")
        context: dict[str, Any] = {"role": role, "document": document, "days": DEFAULT_DAYS}
        try:
            context["days"] = days = clean_days(request.POST.get("days"))
            rules = rules_from_document(document)
            if request.POST.get("save") == "1":
                require_role(self.membership, OrgRole.ADMIN)
                role_update(role=role, rules=rules, actor=request.user, request=request)
                messages.success(request, "Rules saved.")
                return HttpResponseRedirect(self.detail_url(role))
            context["result"] = role_simulate(role=role, rules=rules, days=days)
        except DocumentError as exc:
            context["errors"] = [str(exc)]
        except ValidationError as exc:
            context["errors"] = [
                f"{key}: {msg}" for key, msgs in exc.message_dict.items() for msg in msgs
            ]
        status = 400 if context.get("errors") else 200
        return self.render_to_response(self.get_context_data(**context), status=status)


class RoleLeastPrivilegeView(RoleScopeMixin, TemplateView):
    """What the role's rules were used for (per worker if asked), and a narrower role:
    as a diff, as YAML (?format=yaml) or applied in one click by an admin."""

    template_name = "policies/role_least_privilege.html"
    required_role = OrgRole.REVIEWER
    write_role = OrgRole.ADMIN

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        role = self.get_role()
        try:
            days, worker = least_privilege_params(self.organization, request.GET)
        except DocumentError as exc:
            return self.render_to_response(
                self.get_context_data(role=role, errors=[str(exc)]), status=400
            )
        report = least_privilege_report(
            role=role, worker_id=worker.pk if worker else None, days=days
        )
        if request.GET.get("format") == "yaml":
            response = HttpResponse(report.proposal_yaml(), content_type="text/yaml; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="{role.name}-narrowed.yaml"'
            return response
        return self.render_to_response(
            self.get_context_data(role=role, report=report, worker=worker, days=days)
        )

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        role = self.get_role()
        try:
            days, worker = least_privilege_params(self.organization, request.POST)
            role_narrow(
                role=role,
                days=days,
                worker_id=worker.pk if worker else None,
                proposal_digest=request.POST.get("digest", ""),
                actor=request.user,
                request=request,
            )
        except DocumentError as exc:
            messages.error(request, str(exc))
        except ValidationError as exc:
            for msgs in exc.message_dict.values():
                for msg in msgs:
                    messages.error(request, msg)
        else:
            messages.success(request, "The role now has the proposed, narrower rules.")
            return HttpResponseRedirect(self.detail_url(role))
        return HttpResponseRedirect(request.get_full_path())
