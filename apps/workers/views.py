"""Dashboard pages for workers and their tokens (/o/<org_slug>/workers/…).

Reviewers and above see workers and token metadata; admins and owners change
them. Every change goes through apps.workers.services (which audits it). A
freshly minted token is shown exactly once: it travels to the one-time page
in a session entry that the page pops, and that page is sent with
`Cache-Control: no-store`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views import View
from django.views.generic import DetailView, FormView, ListView, TemplateView

from apps.organizations.models import OrgRole
from apps.organizations.tenancy import OrgViewMixin
from apps.workers import services
from apps.workers.forms import KillSwitchForm, MintForm, RollForm, WorkerForm
from apps.workers.models import EXPIRY_WARNING_DAYS, Worker, WorkerToken

MINTED_SESSION_KEY = "workers:minted-token"


class _WorkersBase(OrgViewMixin):
    required_role = OrgRole.REVIEWER
    write_role = OrgRole.ADMIN
    model = Worker

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["can_manage"] = self.membership.can_manage()
        return context


def _apply_service_errors(form: Any, exc: ValidationError) -> None:
    for field, errors in exc.message_dict.items():
        form.add_error(field if field in form.fields else None, errors)


class WorkerListView(_WorkersBase, ListView):  # type: ignore[misc]
    template_name = "workers/list.html"
    context_object_name = "workers"

    def scope_queryset(self) -> QuerySet[Any]:
        now = timezone.now()
        usable = Q(tokens__revoked_at__isnull=True, tokens__expires_at__gt=now)
        return (
            super()
            .scope_queryset()
            .select_related("default_role", "owner")
            .annotate(
                active_tokens=Count("tokens", filter=usable),
                expiring_tokens=Count(
                    "tokens",
                    filter=usable
                    & Q(tokens__expires_at__lte=now + timedelta(days=EXPIRY_WARNING_DAYS)),
                ),
            )
        )


class WorkerCreateView(_WorkersBase, FormView):
    template_name = "workers/form.html"
    form_class = WorkerForm
    required_role = OrgRole.ADMIN

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "organization": self.organization}

    def form_valid(self, form: WorkerForm) -> HttpResponse:
        data = form.cleaned_data
        try:
            worker = services.worker_create(
                organization=self.organization,
                name=data["name"],
                description=data["description"],
                owner=data["owner"],
                default_role=data["default_role"],
                created_by=self.request.user,
                request=self.request,
            )
        except ValidationError as exc:
            _apply_service_errors(form, exc)
            return self.form_invalid(form)
        messages.success(self.request, f"Worker {worker.name} created. Mint its first token below.")
        return redirect("workers:detail", org_slug=self.organization.slug, worker_id=worker.pk)


class _WorkerObject(_WorkersBase):
    kwargs: dict[str, Any]

    def get_worker(self) -> Worker:
        return get_object_or_404(self.scope_queryset(), pk=self.kwargs["worker_id"])

    def detail_url(self, worker: Worker) -> str:
        return reverse(
            "workers:detail", kwargs={"org_slug": self.organization.slug, "worker_id": worker.pk}
        )


class WorkerUpdateView(_WorkerObject, FormView):
    template_name = "workers/form.html"
    form_class = WorkerForm
    required_role = OrgRole.ADMIN

    def get_form_kwargs(self) -> dict[str, Any]:
        self.worker = self.get_worker()
        return {
            **super().get_form_kwargs(),
            "organization": self.organization,
            "instance": self.worker,
        }

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "worker": self.worker}

    def form_valid(self, form: WorkerForm) -> HttpResponse:
        fresh = self.get_worker()  # the form mutated self.worker in place
        try:
            services.worker_update(
                worker=fresh,
                changed_by=self.request.user,
                request=self.request,
                **{field: form.cleaned_data[field] for field in WorkerForm.Meta.fields},
            )
        except ValidationError as exc:
            _apply_service_errors(form, exc)
            return self.form_invalid(form)
        messages.success(self.request, "Worker saved.")
        return redirect(self.detail_url(fresh))


class WorkerDetailView(_WorkerObject, DetailView):
    template_name = "workers/detail.html"
    context_object_name = "worker"

    def get_object(self, queryset: QuerySet[Any] | None = None) -> Worker:
        return self.get_worker()

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        tokens = list(
            self.object.tokens.select_related("role", "created_by", "rolled_from").order_by(
                "revoked_at", "-created_at"
            )
        )
        context.update(
            tokens=tokens,
            active_tokens=[t for t in tokens if t.status == "active"],
            inactive_tokens=[t for t in tokens if t.status != "active"],
            mint_form=MintForm(organization=self.organization),
            roll_form=RollForm(),
            expiry_warning_days=EXPIRY_WARNING_DAYS,
            # Least-privilege reports: every role this worker's tokens carried.
            report_roles=sorted(
                {t.role for t in tokens} | ({self.object.default_role} - {None}),
                key=lambda role: role.name,
            ),
        )
        return context


class _WorkerAction(_WorkerObject, View):
    """POST-only actions on one worker; they redirect back to its page."""

    required_role = OrgRole.ADMIN

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        worker = self.get_worker()
        try:
            response = self.act(request, worker)
        except ValidationError as exc:
            for error in exc.messages:
                messages.error(request, error)
            response = None
        return response or redirect(self.detail_url(worker))

    def act(self, request: HttpRequest, worker: Worker) -> HttpResponse | None:
        raise NotImplementedError


class TokenMintView(_WorkerAction):
    def act(self, request: HttpRequest, worker: Worker) -> HttpResponse | None:
        form = MintForm(request.POST, organization=self.organization)
        if not form.is_valid():
            for field, errors in form.errors.items():
                label = form.fields[field].label if field in form.fields else ""
                text = " ".join(str(error) for error in errors)
                messages.error(request, f"{label}: {text}" if label else text)
            return None
        token, raw = services.token_mint(
            worker=worker,
            role=form.cleaned_data["role"],
            expires_in_days=form.cleaned_data["expires_in_days"],
            created_by=request.user,
            request=request,
        )
        return _show_once(request, self.organization.slug, worker, token, raw)


class TokenRollView(_WorkerAction):
    def act(self, request: HttpRequest, worker: Worker) -> HttpResponse | None:
        token = get_object_or_404(worker.tokens, public_id=self.kwargs["token_id"])
        form = RollForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose how long the old token keeps working.")
            return None
        new, raw = services.token_roll(
            token=token,
            overlap=form.cleaned_data["overlap"],
            rolled_by=request.user,
            request=request,
        )
        return _show_once(request, self.organization.slug, worker, new, raw, rolled_from=token)


class TokenRevokeView(_WorkerAction):
    def act(self, request: HttpRequest, worker: Worker) -> HttpResponse | None:
        token = get_object_or_404(worker.tokens, public_id=self.kwargs["token_id"])
        services.token_revoke(
            token=token, revoked_by=request.user, reason="Revoked in the dashboard", request=request
        )
        messages.success(request, f"Token {token.public_id} revoked. It stopped working now.")
        return None


class WorkerRevokeAllView(_WorkerAction):
    def act(self, request: HttpRequest, worker: Worker) -> HttpResponse | None:
        count = services.worker_revoke_all_tokens(
            worker=worker, revoked_by=request.user, request=request
        )
        messages.success(request, f"Revoked {count} token(s) of {worker.name}.")
        return None


class WorkerDisableView(_WorkerAction):
    def act(self, request: HttpRequest, worker: Worker) -> HttpResponse | None:
        services.worker_disable(worker=worker, disabled_by=request.user, request=request)
        messages.success(request, f"{worker.name} is disabled: all its tokens fail now.")
        return None


class WorkerEnableView(_WorkerAction):
    def act(self, request: HttpRequest, worker: Worker) -> HttpResponse | None:
        services.worker_enable(worker=worker, enabled_by=request.user, request=request)
        messages.success(request, f"{worker.name} is enabled. Revoked tokens stay revoked.")
        return None


def _show_once(
    request: HttpRequest,
    org_slug: str,
    worker: Worker,
    token: WorkerToken,
    raw: str,
    rolled_from: WorkerToken | None = None,
) -> HttpResponseRedirect:
    request.session[MINTED_SESSION_KEY] = {
        "raw": raw,
        "public_id": token.public_id,
        "worker_id": worker.pk,
        "org_slug": org_slug,
        "rolled_from": rolled_from.public_id if rolled_from else "",
    }
    return redirect("workers:token_once", org_slug=org_slug)


class TokenOnceView(_WorkersBase, TemplateView):
    """The raw token, exactly once. Reloading the page shows that it is gone."""

    template_name = "workers/token_once.html"
    required_role = OrgRole.ADMIN

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        entry = request.session.pop(MINTED_SESSION_KEY, None)
        if entry is not None and entry.get("org_slug") != self.organization.slug:
            entry = None  # minted in another org: never shown under this one
        context = self.get_context_data(**kwargs)
        if entry is not None:
            token = WorkerToken.objects.select_related("worker", "role").get(
                organization=self.organization, public_id=entry["public_id"]
            )
            base = settings.GRANTRY_BASE_URL
            context.update(
                raw=entry["raw"],
                token=token,
                rolled_from=entry.get("rolled_from", ""),
                whoami_url=f"{base}/api/v1/whoami",
                mcp_url=f"{base}/mcp",
            )
        response = self.render_to_response(context)
        add_never_cache_headers(response)
        response["Cache-Control"] = "no-store, no-cache, must-revalidate, private, max-age=0"
        return response


class KillSwitchView(_WorkersBase, FormView):
    template_name = "workers/kill_switch.html"
    form_class = KillSwitchForm
    required_role = OrgRole.ADMIN

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["active_count"] = (
            WorkerToken.objects.for_organization(self.organization).usable().count()
        )
        return context

    def form_valid(self, form: KillSwitchForm) -> HttpResponse:
        try:
            count = services.organization_revoke_all_worker_tokens(
                organization=self.organization,
                confirm=form.cleaned_data["confirm"].strip(),
                revoked_by=self.request.user,
                request=self.request,
            )
        except ValidationError as exc:
            _apply_service_errors(form, exc)
            return self.form_invalid(form)
        messages.success(self.request, f"Kill switch used: {count} worker token(s) revoked.")
        return redirect("workers:list", org_slug=self.organization.slug)
