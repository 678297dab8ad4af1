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
from django.views.generic import DetailView, TemplateView
from typing_extensions import override

from apps.connections.mcp_models import McpToolState
from apps.connections.models import MCP_PROVIDER_KEY, Connection, McpTool
from apps.core.confirm import Confirmation, confirmation_page, is_confirmed, offer_undo
from apps.core.pagination import KeysetListMixin
from apps.organizations.models import OrgRole
from apps.organizations.tenancy import OrgViewMixin, require_role
from apps.policies.evaluate import describe_rule
from apps.policies.forms import (
    ActionRuleForm,
    DryRunForm,
    McpRuleForm,
    ProxyRuleForm,
    RoleForm,
    ToolChoice,
)
from apps.policies.least_privilege import least_privilege_params, least_privilege_report
from apps.policies.models import Role, Rule
from apps.policies.selectors import (
    editable_rules_yaml,
    role_delete_blockers,
    role_document,
    role_dry_run,
    role_users,
    rule_document,
)
from apps.policies.services import (
    role_create,
    role_delete,
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
from apps.providers.registry import UnknownProvider, all_providers, get_provider


class RoleScopeMixin(OrgViewMixin):
    model = Role
    kwargs: dict[str, Any]

    def scope_queryset(self) -> QuerySet[Role]:
        return self.tenant_rows(Role)

    def get_role(self) -> Role:
        return get_object_or_404(self.scope_queryset(), pk=self.kwargs["role_id"])

    def org_connections(self, provider_key: str | None = None) -> list[Any]:
        # A member's personal connection is never named by a rule (`on_behalf_of` reaches it).
        connections = self.tenant_rows(Connection).filter(owner__isnull=True)
        if provider_key is not None:
            connections = connections.filter(provider_key=provider_key)
        return list(connections.order_by("name"))

    def org_members(self) -> list[Any]:
        """Members who may be named as a rule's approvers."""
        return [
            m.user
            for m in self.organization.memberships.select_related("user").order_by("user__email")
        ]

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


class RoleListView(RoleScopeMixin, KeysetListMixin, TemplateView):
    """One keyset page of roles by name, with search."""

    template_name = "policies/role_list.html"
    search_fields = ("name", "description")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        page = self.paginate(self.scope_queryset())
        counts = dict(
            self.tenant_rows(Rule)
            .filter(role_id__in=[role.pk for role in page])
            .values("role_id")
            .annotate(n=Count("id"))
            .values_list("role_id", "n")
        )
        for role in page:
            role.rule_count = counts.get(role.pk, 0)
        context.update(page=page, roles=page.rows)
        return context


class RoleCreateView(RoleAdminMixin, TemplateView):
    template_name = "policies/role_form.html"

    @override
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
                )
            except ValidationError as exc:
                _apply_service_errors(form, exc)
            else:
                messages.success(request, f"Role “{role.name}” created. Now add its rules.")
                return HttpResponseRedirect(self.detail_url(role))
        return self.render_to_response(self.get_context_data(form=form), status=400)


class RoleEditView(RoleAdminMixin, TemplateView):
    template_name = "policies/role_form.html"

    @override
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
        context["rules"] = rules_in_words(role)
        context["can_manage"] = self.membership.can_manage()
        if context["can_manage"]:
            context["delete_blockers"] = role_delete_blockers(role)
        context["dry_run_form"] = dry_run_form(self, None)
        return context


class RoleDeleteView(RoleAdminMixin, TemplateView):
    def confirmation(self, role: Role) -> Confirmation:
        users = role_users(role)
        rules = role.rules.count()
        stops = [
            f"The role “{role.name}” and its {rules} rule{'' if rules == 1 else 's'} are deleted."
        ]
        if users:
            stops.append(
                f"It still governs {len(users)} worker{'' if len(users) == 1 else 's'}: move them "
                "(their default role and tokens) to another role first, or the deletion is refused."
            )
        return Confirmation(
            title=f"Delete role “{role.name}”?",
            stops=stops,
            button="Delete role",
            cancel_url=self.detail_url(role),
            lists=[("Workers that use this role", users)],
        )

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        role = self.get_role()
        return confirmation_page(request, self.confirmation(role), self.get_context_data())

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        role = self.get_role()
        if not is_confirmed(request):
            return confirmation_page(request, self.confirmation(role), self.get_context_data())
        try:
            role_delete(role=role, actor=request.user)
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
        """Every provider, the organization's connected ones first (so the picker starts
        on one it can use, not on the alphabet's first)."""
        from apps.connections.models import Connection

        connected = set(self.tenant_rows(Connection).values_list("provider_key", flat=True))
        providers = all_providers(organization=self.organization)
        return [p for p in providers if p.key in connected] + [
            p for p in providers if p.key not in connected
        ]

    def _form(self, data: Any = None) -> tuple[str, Any, Any]:
        source = data if data is not None else self.request.GET
        members = self.org_members()
        if source.get("kind") == "mcp":
            return self._mcp_form(source, data, members)
        if source.get("kind") == "proxy":
            return (
                "proxy",
                None,
                ProxyRuleForm(data, connections=self.org_connections(), members=members),
            )
        key = source.get("provider") or ""
        if not key:
            return "pick", None, None
        try:
            provider = get_provider(key, organization=self.organization)
        except UnknownProvider:
            return "pick", None, None
        form = ActionRuleForm(
            data,
            provider=provider,
            connections=self.org_connections(provider.key),
            members=members,
        )
        return "action", provider, form

    def _mcp_form(self, source: Any, data: Any, members: list[Any]) -> tuple[str, Any, Any]:
        """Tools of one MCP connection (its approved tools to pick from)."""
        connection = next(
            (c for c in self.org_connections(MCP_PROVIDER_KEY) if str(c.pk) == source.get("mcp")),
            None,
        )
        if connection is None:
            return "pick", None, None
        tools = self.tenant_rows(McpTool).filter(connection=connection, state=McpToolState.APPROVED)
        form = McpRuleForm(
            data,
            connection=connection,
            tools=[ToolChoice.of(t) for t in tools],
            members=members,
        )
        return "mcp", connection, form

    def _render(self, step: str, provider: Any, form: Any, status: int = 200) -> HttpResponse:
        context = self.get_context_data(
            role=self.get_role(),
            step=step,
            provider=provider,
            form=form,
            providers=self._providers(),
            mcp_connections=self.org_connections(MCP_PROVIDER_KEY),
        )
        return self.render_to_response(context, status=status)

    @override
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
                    mcp_connections=self.org_connections(MCP_PROVIDER_KEY),
                    simulation=result,
                )
                return self.render_to_response(context)
            return self._render(step, provider, form, status=400)
        if form.is_valid():
            try:
                rule_add(role=role, rule=form.to_rule(), actor=request.user)
            except ValidationError as exc:
                form.add_service_errors(exc.message_dict)
            else:
                messages.success(request, "Rule added.")
                return HttpResponseRedirect(self.detail_url(role))
        return self._render(step, provider, form, status=400)


RESTORE_SESSION_KEY = "policies:removed-rule"


class RuleDeleteView(RoleAdminMixin, View):
    http_method_names = ("post",)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        role = self.get_role()
        rule = get_object_or_404(self.tenant_rows(Rule).filter(role=role), pk=kwargs["rule_id"])
        words = describe_rule(rule.to_spec())
        if not is_confirmed(request):
            users = role_users(role)
            confirmation = Confirmation(
                title=f"Remove a rule of “{role.name}”?",
                stops=[
                    f"Workers with this role can no longer use: {words} (unless another rule "
                    "allows it); denied calls answer 403 immediately.",
                    f"{len(users)} worker{'' if len(users) == 1 else 's'} use this role.",
                ],
                button="Remove rule",
                cancel_url=self.detail_url(role),
                undo="the next page offers to add the rule back.",
                lists=[("Workers that use this role", users)],
            )
            context = {"organization": self.organization, "membership": self.membership}
            return confirmation_page(request, confirmation, context)
        document = {k: v for k, v in rule_document(rule).items() if k != "id"}
        rule_delete(rule=rule, actor=request.user)
        messages.success(request, f"Rule removed: {words}.")
        request.session[RESTORE_SESSION_KEY] = {"role_id": role.pk, "rule": document}
        offer_undo(
            request,
            label="Undo: add the rule back",
            url=reverse(
                "policies:rule_restore",
                kwargs={"org_slug": self.organization.slug, "role_id": role.pk},
            ),
            org_slug=self.organization.slug,
        )
        return HttpResponseRedirect(self.detail_url(role))


class RuleRestoreView(RoleAdminMixin, View):
    """Undo of a rule removal: adds back the rule this session removed last (once)."""

    http_method_names = ("post",)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        role = self.get_role()
        entry = request.session.pop(RESTORE_SESSION_KEY, None)
        if not entry or entry.get("role_id") != role.pk:
            messages.error(request, "There is no removed rule to add back.")
            return HttpResponseRedirect(self.detail_url(role))
        try:
            rule_add(role=role, rule=entry["rule"], actor=request.user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, "Rule added back.")
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


def rules_in_words(role: Role) -> list[tuple[Rule, str]]:
    """The role's rules and what each allows in words, in order (role and simulation pages)."""
    rules = role.rules.select_related("connection").order_by("position", "id")
    return [(rule, describe_rule(rule.to_spec())) for rule in rules]


def _yaml(document: dict[str, Any]) -> str:
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def dry_run_form(view: RoleScopeMixin, data: Any) -> DryRunForm:
    return DryRunForm.for_organization(view.organization, data)


class RoleDryRunView(RoleScopeMixin, TemplateView):
    """“Test a call”. A POST here changes nothing, so members may use it."""

    template_name = "policies/role_test.html"
    write_role = None

    @override
    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        context = self.get_context_data(role=self.get_role(), form=dry_run_form(self, None))
        return self.render_to_response(context)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        role = self.get_role()
        form = dry_run_form(self, request.POST)
        decision = None
        input_errors: list[Any] = []
        if form.is_valid():
            decision, input_errors = role_dry_run(role=role, cleaned=form.cleaned_data)
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

    @override
    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        role = self.get_role()
        return self.render_to_response(
            self.get_context_data(role=role, document=editable_rules_yaml(role), days=DEFAULT_DAYS)
        )

    @override
    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["rules"] = rules_in_words(kwargs["role"])
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        role = self.get_role()
        document = request.POST.get("document", "")
        context: dict[str, Any] = {"role": role, "document": document, "days": DEFAULT_DAYS}
        try:
            context["days"] = days = clean_days(request.POST.get("days"))
            rules = rules_from_document(document)
            if request.POST.get("save") == "1":
                require_role(self.membership, OrgRole.ADMIN)
                role_update(role=role, rules=rules, actor=request.user)
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
