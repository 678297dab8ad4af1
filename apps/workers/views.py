"""Dashboard pages for workers and their tokens (/o/<org_slug>/workers/…).

Reviewers and above see workers and token metadata; admins and owners change
them. Every change goes through apps.workers.services (which audits it). A
freshly minted token is shown exactly once: it travels to the one-time page
in a session entry that the page pops, and that page is sent with
`Cache-Control: no-store`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views import View
from django.views.generic import DetailView, FormView, TemplateView
from typing_extensions import override

from apps.audit.selectors import recent_calls
from apps.core.confirm import Confirmation, confirmation_page, is_confirmed, offer_undo
from apps.core.pagination import KeysetListMixin, int_param, keyset_page
from apps.core.tokens import EXPIRY_WARNING_DAYS
from apps.organizations.models import OrgRole
from apps.organizations.tenancy import OrgViewMixin
from apps.workers import services, trust
from apps.workers.forms import MintForm, RollForm, TrustPolicyForm, WorkerForm
from apps.workers.models import TrustPolicy, Worker, WorkerToken, WorkerTokenQuerySet

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


class WorkerListView(_WorkersBase, KeysetListMixin, TemplateView):
    """One keyset page of workers by name, with search; token counts for that page only."""

    template_name = "workers/list.html"
    search_fields = ("name", "description")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        page = self.paginate(
            self.scope_queryset().select_related("default_role", "owner", "acts_for")
        )
        now = timezone.now()
        counts = {
            row["worker_id"]: row
            for row in self.tenant_rows(WorkerToken)
            .filter(worker_id__in=[w.pk for w in page], revoked_at__isnull=True, expires_at__gt=now)
            .values("worker_id")
            .annotate(
                active=Count("id"),
                expiring=Count(
                    "id",
                    filter=Q(expires_at__lte=now + timedelta(days=EXPIRY_WARNING_DAYS)),
                ),
            )
        }
        for worker in page:
            row: Any = counts.get(worker.pk, {})
            worker.active_tokens = row.get("active", 0)
            worker.expiring_tokens = row.get("expiring", 0)
        context.update(page=page, workers=page.rows)
        return context


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
                acts_for=data["acts_for"],
                default_role=data["default_role"],
                require_dpop=data["require_dpop"],
                actor=self.request.user,
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
                actor=self.request.user,
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

    @override
    def get_object(self, queryset: QuerySet[Any] | None = None) -> Worker:
        return self.get_worker()

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        now = timezone.now()
        tokens = self.object.tokens.select_related("role", "created_by", "rolled_from")
        usable = Q(revoked_at__isnull=True, expires_at__gt=now)
        # Ended tokens pile up with every roll: newest first, one keyset page at a time.
        ended = keyset_page(
            tokens.exclude(usable),
            order="id",
            descending=True,
            after=int_param(self.request, "after"),
            before=int_param(self.request, "before"),
        )
        context.update(
            active_tokens=list(tokens.filter(usable).order_by("-created_at")),
            inactive_tokens=ended.rows,
            inactive_page=ended,
            inactive_count=tokens.exclude(usable).count(),
            mint_form=MintForm(organization=self.organization),
            trust_policies=list(self.object.trust_policies.select_related("role")),
            trust_form=TrustPolicyForm(organization=self.organization),
            token_endpoint=f"{settings.GRANTRY_BASE_URL}/oauth/token/",
            roll_form=RollForm(),
            expiry_warning_days=EXPIRY_WARNING_DAYS,
            # Least-privilege reports: every role this worker's tokens carried.
            report_roles=sorted(
                {t.role for t in tokens} | ({self.object.default_role} - {None}),
                key=lambda role: role.name,
            ),
        )
        return context


def _calls(n: int) -> str:
    return f"{n} call{'' if n == 1 else 's'} in the last hour"


def _tokens(n: int) -> str:
    return f"{n} token{'' if n == 1 else 's'}"


def _every_token(tokens: int, workers: int) -> str:
    """ "The only token of 1 worker stops working", "All 3 tokens of 2 workers stop working"."""
    of = f"{workers} worker{'' if workers == 1 else 's'}"
    if tokens == 1:
        return f"The only token ({of}) stops working"
    if tokens == 0:
        return "No token is active; nothing stops working"
    return f"All {tokens} tokens of {of} stop working"


class _WorkerAction(_WorkerObject, View):
    """POST-only actions on one worker; they redirect back to its page. A
    destructive one answers a confirmation page first (apps.core.confirm)."""

    required_role = OrgRole.ADMIN

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        worker = self.get_worker()
        if not is_confirmed(request):
            confirmation = self.confirmation(request, worker)
            if confirmation is not None:
                return confirmation_page(
                    request, confirmation, self.get_context_data_for_confirm(worker)
                )
        try:
            response = self.act(request, worker)
        except ValidationError as exc:
            for error in exc.messages:
                messages.error(request, error)
            response = None
        return response or redirect(self.detail_url(worker))

    def get_context_data_for_confirm(self, worker: Worker) -> dict[str, Any]:
        return {"organization": self.organization, "membership": self.membership, "worker": worker}

    def confirmation(self, request: HttpRequest, worker: Worker) -> Confirmation | None:  # noqa: ARG002 - the default; overrides use both
        return None

    def act(self, request: HttpRequest, worker: Worker) -> HttpResponse | None:
        raise NotImplementedError


class TokenMintView(_WorkerAction):
    def act(self, request: HttpRequest, worker: Worker) -> HttpResponse | None:
        form = MintForm(request.POST, organization=self.organization)
        if not form.is_valid():
            return _worker_page_with_mint_errors(self, request, worker, form)
        try:
            token, raw = services.token_mint(
                worker=worker,
                role=form.cleaned_data["role"],
                expires_in_days=form.cleaned_data["expires_in_days"],
                actor=request.user,
                name=form.cleaned_data["name"],
                dpop_jkt=form.cleaned_data["dpop_key"],
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                field = "dpop_key" if field == "dpop_jkt" else field
                form.add_error(field if field in form.fields else None, errors)
            return _worker_page_with_mint_errors(self, request, worker, form)
        return _show_once(request, self.organization.slug, worker, token, raw)


class TrustPolicyAddView(_WorkerAction):
    """Add a trust policy (apps.workers.trust); errors come back as messages."""

    def act(self, request: HttpRequest, worker: Worker) -> HttpResponse | None:
        form = TrustPolicyForm(request.POST, organization=self.organization)
        if not form.is_valid():
            for field, errors in form.errors.items():
                for error in errors:
                    messages.error(
                        request, f"{field}: {error}" if field != "__all__" else str(error)
                    )
            return None
        data = form.cleaned_data
        trust.trust_policy_create(
            worker=worker,
            preset=data["preset"],
            issuer=data["issuer"],
            audience=data["audience"],
            conditions=data["conditions"],
            clients=data["clients"],
            role=data["role"],
            max_minutes=data["max_minutes"],
            actor=request.user,
        )
        messages.success(request, "Trust policy added.")
        return None


class TrustPolicyToggleView(_WorkerAction):
    """Disable (after a confirmation: its tokens are revoked) or enable a trust policy."""

    def _policy(self, worker: Worker) -> TrustPolicy:
        return get_object_or_404(worker.trust_policies, pk=self.kwargs["trust_policy_id"])

    def confirmation(self, _request: HttpRequest, worker: Worker) -> Confirmation | None:
        policy = self._policy(worker)
        if not policy.enabled:
            return None
        live = policy.tokens.filter(revoked_at__isnull=True, expires_at__gt=timezone.now()).count()
        return Confirmation(
            title=f"Disable the {policy.get_preset_display()} trust policy of {worker.name}?",
            stops=[
                f"Tokens of {policy.issuer} can no longer become {worker.name} until you "
                "enable it again.",
                f"{_tokens(live)} it let in stop working now.",
            ],
            button="Disable trust policy",
            cancel_url=self.detail_url(worker),
        )

    def act(self, request: HttpRequest, worker: Worker) -> HttpResponse | None:
        policy = self._policy(worker)
        trust.trust_policy_set_enabled(
            policy=policy, enabled=not policy.enabled, actor=request.user
        )
        messages.success(request, f"Trust policy {'disabled' if policy.enabled else 'enabled'}.")
        return None


class TrustPolicyDeleteView(_WorkerAction):
    def _policy(self, worker: Worker) -> TrustPolicy:
        return get_object_or_404(worker.trust_policies, pk=self.kwargs["trust_policy_id"])

    def confirmation(self, _request: HttpRequest, worker: Worker) -> Confirmation | None:
        policy = self._policy(worker)
        live = policy.tokens.filter(revoked_at__isnull=True, expires_at__gt=timezone.now()).count()
        return Confirmation(
            title=f"Delete the {policy.get_preset_display()} trust policy of {worker.name}?",
            stops=[
                f"Tokens of {policy.issuer} can no longer become {worker.name}.",
                f"{_tokens(live)} it let in stop working now.",
            ],
            button="Delete trust policy",
            cancel_url=self.detail_url(worker),
        )

    def act(self, request: HttpRequest, worker: Worker) -> HttpResponse | None:
        count = trust.trust_policy_delete(policy=self._policy(worker), actor=request.user)
        messages.success(request, f"Trust policy deleted; {_tokens(count)} revoked.")
        return None


class TokenRollView(_WorkerAction):
    def _token(self, worker: Worker) -> WorkerToken:
        return get_object_or_404(worker.tokens, public_id=self.kwargs["token_id"])

    def confirmation(self, request: HttpRequest, worker: Worker) -> Confirmation | None:
        token = self._token(worker)
        overlap = RollForm(request.POST)
        label = (
            dict(overlap.fields["overlap"].choices).get(request.POST.get("overlap", ""), "")  # type: ignore[attr-defined]
            or "the chosen time"
        )
        calls = recent_calls(self.organization, token_id=token.public_id)
        return Confirmation(
            title=f"Roll token {token.public_id} of {worker.name}?",
            stops=[
                f"{token.public_id} keeps working for {label.lower()}, then stops "
                f"({_calls(calls)} used it).",
                "A new token is shown once: give it to the agent before the old one stops.",
            ],
            button="Roll token",
            cancel_url=self.detail_url(worker),
            undo="revoke the new token; the old one keeps working until its overlap ends.",
        )

    def act(self, request: HttpRequest, worker: Worker) -> HttpResponse | None:
        token = self._token(worker)
        form = RollForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose how long the old token keeps working.")
            return None
        new, raw = services.token_roll(
            token=token,
            overlap=form.cleaned_data["overlap"],
            actor=request.user,
        )
        return _show_once(request, self.organization.slug, worker, new, raw, rolled_from=token)


class TokenRevokeView(_WorkerAction):
    def _token(self, worker: Worker) -> WorkerToken:
        return get_object_or_404(worker.tokens, public_id=self.kwargs["token_id"])

    @override
    def confirmation(self, request: HttpRequest, worker: Worker) -> Confirmation | None:
        token = self._token(worker)
        calls = recent_calls(self.organization, token_id=token.public_id)
        return Confirmation(
            title=f"Revoke token {token.public_id} of {worker.name}?",
            stops=[
                f"{worker.name}'s token {token.public_id} (…{token.last4}) stops working "
                f"immediately; {_calls(calls)}."
            ],
            button="Revoke token",
            cancel_url=self.detail_url(worker),
        )

    def act(self, request: HttpRequest, worker: Worker) -> HttpResponse | None:
        token = self._token(worker)
        services.token_revoke(token=token, actor=request.user, reason="Revoked in the dashboard")
        messages.success(request, f"Token {token.public_id} revoked. It stopped working now.")
        return None


def _worker_stops(worker: Worker) -> str:
    usable = worker.tokens.filter(revoked_at__isnull=True, expires_at__gt=timezone.now()).count()
    calls = recent_calls(worker.organization, worker_id=worker.pk)
    return f"{worker.name}'s {_tokens(usable)} stop working immediately; {_calls(calls)}."


class WorkerRevokeAllView(_WorkerAction):
    @override
    def confirmation(self, request: HttpRequest, worker: Worker) -> Confirmation | None:
        return Confirmation(
            title=f"Revoke every token of {worker.name}?",
            stops=[_worker_stops(worker), "Revoked tokens never come back: mint new ones after."],
            button="Revoke all tokens",
            cancel_url=self.detail_url(worker),
        )

    def act(self, request: HttpRequest, worker: Worker) -> HttpResponse | None:
        count = services.worker_revoke_all_tokens(worker=worker, actor=request.user)
        messages.success(request, f"Revoked {count} token(s) of {worker.name}.")
        return None


class WorkerDisableView(_WorkerAction):
    @override
    def confirmation(self, request: HttpRequest, worker: Worker) -> Confirmation | None:
        return Confirmation(
            title=f"Disable {worker.name}?",
            stops=[_worker_stops(worker)],
            button="Disable worker",
            cancel_url=self.detail_url(worker),
            undo="enable the worker again; its tokens that are not revoked or expired work again.",
        )

    def act(self, request: HttpRequest, worker: Worker) -> HttpResponse | None:
        services.worker_disable(worker=worker, actor=request.user)
        messages.success(request, f"{worker.name} is disabled: all its tokens fail now.")
        offer_undo(
            request,
            label=f"Undo: enable {worker.name} again",
            url=reverse(
                "workers:enable",
                kwargs={"org_slug": self.organization.slug, "worker_id": worker.pk},
            ),
            org_slug=self.organization.slug,
        )
        return None


class WorkerEnableView(_WorkerAction):
    def act(self, request: HttpRequest, worker: Worker) -> HttpResponse | None:
        try:
            services.worker_enable(worker=worker, actor=request.user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return None
        messages.success(request, f"{worker.name} is enabled. Revoked tokens stay revoked.")
        return None


def _worker_page_with_mint_errors(
    view: _WorkerObject, request: HttpRequest, worker: Worker, form: MintForm
) -> HttpResponse:
    """The worker's page again, with the errors next to the fields and the values kept."""
    page = WorkerDetailView()
    page.setup(request, **view.kwargs)
    page.organization, page.membership, page.object = view.organization, view.membership, worker
    context = page.get_context_data(object=worker)
    context["mint_form"] = form
    return TemplateResponse(request, page.template_name, context, status=400)


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
            token = (
                self.tenant_rows(WorkerToken)
                .select_related("worker", "role")
                .get(public_id=entry["public_id"])
            )
            base = settings.GRANTRY_BASE_URL
            context.update(
                raw=entry["raw"],
                token=token,
                rolled_from=entry.get("rolled_from", ""),
                whoami_url=f"{base}/api/v1/whoami",
                base_url=base,
                mcp_url=f"{base}/mcp",
            )
        response = self.render_to_response(context)
        add_never_cache_headers(response)
        response["Cache-Control"] = "no-store, no-cache, must-revalidate, private, max-age=0"
        return response


class KillSwitchView(_WorkersBase, View):
    """The org-wide kill switch, behind the same confirmation as every destructive action."""

    required_role = OrgRole.ADMIN

    def confirmation(self) -> Confirmation:
        tokens = cast(WorkerTokenQuerySet, self.tenant_rows(WorkerToken)).usable()
        workers = tokens.values("worker_id").distinct().count()
        calls = recent_calls(self.organization)
        return Confirmation(
            title=f"Revoke every worker token of {self.organization.name}?",
            stops=[
                _every_token(tokens.count(), workers)
                + " immediately; every agent is cut off on its next request "
                f"({_calls(calls)}).",
                "Revoked tokens never come back: you will mint new ones afterwards.",
            ],
            button="Revoke every worker token",
            cancel_url=reverse("workers:list", kwargs={"org_slug": self.organization.slug}),
        )

    def _page(self, request: HttpRequest) -> HttpResponse:
        context = {"organization": self.organization, "membership": self.membership}
        return confirmation_page(request, self.confirmation(), context)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._page(request)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_confirmed(request):
            return self._page(request)
        count = services.organization_revoke_all_worker_tokens(
            organization=self.organization,
            confirm=self.organization.slug,  # a person confirmed on the page above
            actor=self.request.user,
        )
        messages.success(self.request, f"Kill switch used: {count} worker token(s) revoked.")
        return redirect("workers:list", org_slug=self.organization.slug)
