"""Dashboard pages: the Approvals queue, one approval with its decision form, the
email link's landing and the organization's approval settings (OrgViewMixin).

Reviewers and up see the whole queue; a member sees the requests a rule names
them to approve. Whether someone may decide is the service's rule."""

from __future__ import annotations

import json
from typing import Any, cast

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views import View
from django.views.generic import ListView, TemplateView
from typing_extensions import override

from apps.approvals.forms import ApprovalSettingsForm, DecisionForm
from apps.approvals.models import Approval, ApprovalQuerySet, ApprovalSettings, ApprovalStatus
from apps.approvals.selectors import InputSide, input_diff, previous_approved
from apps.approvals.services import (
    ApprovalRefused,
    approval_decide,
    approval_link_open,
    approval_settings_update,
    approvals_received,
    excluded_approver_ids,
    input_for,
    may_decide,
)
from apps.organizations.models import OrgRole
from apps.organizations.tenancy import OrgViewMixin


class ApprovalScopeMixin(OrgViewMixin):
    model = Approval
    kwargs: dict[str, Any]

    def scope_queryset(self) -> QuerySet[Approval]:
        rows = cast(ApprovalQuerySet, self.tenant_rows(Approval))
        return rows.visible_to(self.membership).select_related("worker")

    def get_approval(self) -> Approval:
        return get_object_or_404(self.scope_queryset(), public_id=self.kwargs["approval_id"])

    def detail_url(self, approval: Approval) -> str:
        return reverse(
            "approvals:detail",
            kwargs={"org_slug": self.organization.slug, "approval_id": approval.public_id},
        )


class ApprovalListView(ApprovalScopeMixin, ListView):  # type: ignore[misc]
    template_name = "approvals/list.html"
    context_object_name = "approvals"
    paginate_by = 50

    def scope_queryset(self) -> QuerySet[Approval]:
        queryset = super().scope_queryset()
        if self.request.GET.get("show") == "all":
            return queryset.order_by("-id")
        return queryset.filter(status=ApprovalStatus.PENDING).order_by("expires_at", "id")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["show_all"] = self.request.GET.get("show") == "all"
        context["can_manage"] = self.membership.can_manage()
        return context


class ApprovalDetailView(ApprovalScopeMixin, TemplateView):
    """What, who, why, the input (exact for an eligible approver while pending, else as
    the organization stores it), a diff against the last approved call of the same
    action (compared on the real values), the decisions, and the decision form.
    POST decides; every member who can see it may try, the service checks."""

    template_name = "approvals/detail.html"

    def _context(self, approval: Approval, form: DecisionForm | None = None) -> dict[str, Any]:
        previous = previous_approved(approval)
        excluded = self.request.user.pk in excluded_approver_ids(approval)
        shown, exact = input_for(approval, self.membership)
        diff = []
        if previous is not None:
            diff = input_diff(
                InputSide(previous.input, previous.input_stored, previous.input_fingerprints),
                InputSide(shown, exact, approval.input_fingerprints),
            )
        return self.get_context_data(
            approval=approval,
            input_json=json.dumps(shown, indent=2, ensure_ascii=False, sort_keys=True),
            input_exact=exact,
            status=approval.effective_status(),
            previous=previous,
            diff=diff,
            decisions=list(approval.decisions.all()),
            received=approvals_received(approval),
            may_decide=may_decide(approval, self.membership),
            excluded=excluded,
            form=form or DecisionForm(),
        )

    @override
    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self.render_to_response(self._context(self.get_approval()))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        approval = self.get_approval()
        form = DecisionForm(request.POST)
        if not form.is_valid():
            return self.render_to_response(self._context(approval, form), status=400)
        approve = form.cleaned_data["decision"] == "approve"
        try:
            approval_decide(
                approval=approval,
                actor=request.user,
                approve=approve,
                comment=form.cleaned_data["comment"],
            )
        except ApprovalRefused as refused:
            form.add_error(None, refused.message)
            approval.refresh_from_db()
            return self.render_to_response(self._context(approval, form), status=refused.status)
        messages.success(request, "Approved." if approve else "Denied.")
        return HttpResponseRedirect(self.detail_url(approval))


class ApprovalLinkView(ApprovalScopeMixin, View):
    """Where an approver's email link lands: after login, spend the link and show
    the approval. It decides nothing."""

    http_method_names = ("get",)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        approval = self.get_approval()
        if approval_link_open(approval=approval, user=request.user, token=kwargs["token"]):
            messages.info(request, "Review the request below, then approve or deny it.")
        else:
            messages.warning(
                request,
                "This email link was already used, has expired or is not yours. "
                "The request is shown below if you may see it.",
            )
        return HttpResponseRedirect(self.detail_url(approval))


class ApprovalSettingsView(OrgViewMixin, TemplateView):
    template_name = "approvals/settings.html"
    required_role = OrgRole.ADMIN
    write_role = OrgRole.ADMIN

    def _row(self) -> ApprovalSettings | None:
        return self.tenant_rows(ApprovalSettings).first()

    def _render(self, form: ApprovalSettingsForm, status: int = 200) -> HttpResponse:
        row = self._row()
        context = self.get_context_data(
            form=form,
            webhook_set=bool(row and row.webhook_url),
            secret_set=bool(row and row.webhook_secret),
        )
        return self.render_to_response(context, status=status)

    @override
    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        row = self._row()
        initial = {"require_two_approvers": bool(row and row.require_two_approvers)}
        return self._render(ApprovalSettingsForm(initial=initial))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = ApprovalSettingsForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                approval_settings_update(
                    organization=self.organization,
                    require_two_approvers=data["require_two_approvers"],
                    webhook_url=data.get("webhook_url") or None,
                    webhook_secret=data.get("webhook_secret") or None,
                    remove_webhook=data["remove_webhook"],
                    actor=request.user,
                )
            except ValidationError as exc:
                for key, msgs in exc.message_dict.items():
                    for msg in msgs:
                        form.add_error(key if key in form.fields else None, msg)
            else:
                messages.success(request, "Approval settings saved.")
                return HttpResponseRedirect(
                    reverse("approvals:settings", kwargs={"org_slug": self.organization.slug})
                )
        return self._render(form, status=400)
