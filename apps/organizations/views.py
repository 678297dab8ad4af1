from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views import View
from django.views.generic import TemplateView

from apps.audit.selectors import organization_archives
from apps.audit.signing import signing_key
from apps.core.confirm import Confirmation, confirmation_page, is_confirmed
from apps.core.pagination import KeysetListMixin
from apps.organizations import services
from apps.organizations.forms import InvitationForm, OrganizationSettingsForm, RoleForm
from apps.organizations.invitations import pending_key_forget, pending_key_remember
from apps.organizations.models import Invitation, Membership, OrgRole
from apps.organizations.selectors import invitations_for_user
from apps.organizations.tenancy import OrgViewMixin

UPCOMING_SECTIONS: dict[str, tuple[str, str]] = {}


def _error_text(exc: ValidationError) -> str:
    return " ".join(exc.messages)


class OverviewView(OrgViewMixin, TemplateView):
    template_name = "organizations/overview.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["my_invitations"] = list(invitations_for_user(self.request.user)[:5])
        return context


class UpcomingSectionView(OrgViewMixin, TemplateView):
    """Placeholder for a dashboard section that is not built yet (no broken links)."""

    template_name = "organizations/upcoming.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        section = UPCOMING_SECTIONS.get(self.kwargs["section"])
        if section is None:
            raise Http404("No such section.")
        context["section_label"], context["section_help"] = section
        return context


# --- Members -----------------------------------------------------------------


class MembersView(OrgViewMixin, KeysetListMixin, TemplateView):
    """Everyone sees who is in the org; admins and owners also manage it."""

    template_name = "organizations/members.html"
    write_role = OrgRole.ADMIN
    search_fields = ("user__email",)
    keyset_order = "user__email"

    def scope_queryset(self) -> QuerySet[Membership]:
        return self.organization.memberships.select_related("user").order_by("user__email")

    def pending_invitations(self) -> QuerySet[Invitation]:
        return self.organization.invitations.filter(
            accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
        ).select_related("invited_by")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        can_manage = self.membership.can_manage()
        page = self.paginate(self.scope_queryset())
        context.update(
            page=page,
            members=page.rows,
            invitations=self.pending_invitations(),
            can_manage=can_manage,
            owner_count=self.organization.memberships.owners().count(),
            role_choices=InvitationForm(actor=self.membership).fields["role"].choices,  # type: ignore[attr-defined]
        )
        if can_manage:
            context.setdefault("invite_form", InvitationForm(actor=self.membership))
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # OrgViewMixin already answered 403 to anyone below admin.
        form = InvitationForm(request.POST, actor=self.membership)
        if form.is_valid():
            try:
                issued = services.invitation_create(
                    organization=self.organization,
                    email=form.cleaned_data["email"],
                    role=form.cleaned_data["role"],
                    actor_membership=self.membership,
                )
            except ValidationError as exc:
                _attach_errors(form, exc)
            else:
                messages.success(request, f"Invitation sent to {issued.invitation.email}.")
                return redirect("orgs:members", org_slug=self.organization.slug)
        context = self.get_context_data(invite_form=form)
        return self.render_to_response(context, status=400)


def _attach_errors(form: Any, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


class _MemberActionView(OrgViewMixin, View):
    """POST-only actions on the Members page (admins and owners)."""

    required_role = OrgRole.ADMIN
    http_method_names = ("post",)

    def scope_queryset(self) -> QuerySet[Membership]:
        return self.organization.memberships.select_related("user")

    def back(self) -> HttpResponse:
        return redirect("orgs:members", org_slug=self.organization.slug)


class MemberRoleView(_MemberActionView):
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        target = get_object_or_404(self.scope_queryset(), pk=kwargs["membership_id"])
        form = RoleForm(request.POST, actor=self.membership)
        if not form.is_valid():
            messages.error(request, "Choose a role you are allowed to give.")
            return self.back()
        try:
            services.membership_change_role(
                membership=target,
                role=form.cleaned_data["role"],
                actor_membership=self.membership,
            )
        except ValidationError as exc:
            messages.error(request, _error_text(exc))
        else:
            messages.success(
                request, f"{target.user.email} is now {OrgRole(form.cleaned_data['role']).label}."
            )
        return self.back()


class MemberRemoveView(_MemberActionView):
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        target = get_object_or_404(self.scope_queryset(), pk=kwargs["membership_id"])
        email = target.user.email
        removed_self = target.pk == self.membership.pk
        if not is_confirmed(request):
            who = "You lose" if removed_self else f"{email} loses"
            confirmation = Confirmation(
                title=f"Remove {email} from {self.organization.name}?",
                stops=[
                    f"{who} access to {self.organization.name} immediately, and "
                    f"{'your' if removed_self else 'their'} personal API tokens for it stop "
                    "working. Workers they own keep working.",
                ],
                button="Remove member",
                cancel_url=reverse("orgs:members", kwargs={"org_slug": self.organization.slug}),
                undo="invite them again (they join with the role you choose).",
            )
            context = {"organization": self.organization, "membership": self.membership}
            return confirmation_page(request, confirmation, context)
        try:
            services.membership_remove(membership=target, actor_membership=self.membership)
        except ValidationError as exc:
            messages.error(request, _error_text(exc))
            return self.back()
        messages.success(request, f"{email} was removed from {self.organization.name}.")
        if removed_self:
            return redirect(settings.LOGIN_REDIRECT_URL)  # home: the project names it
        return self.back()


class InvitationRevokeView(_MemberActionView):
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        invitation = get_object_or_404(
            self.organization.invitations.all(), pk=kwargs["invitation_id"]
        )
        try:
            services.invitation_revoke(invitation=invitation, actor_membership=self.membership)
        except ValidationError as exc:
            messages.error(request, _error_text(exc))
        else:
            messages.success(request, f"The invitation for {invitation.email} was withdrawn.")
        return self.back()


# --- Settings ----------------------------------------------------------------


class SettingsView(OrgViewMixin, TemplateView):
    """Everyone sees the settings; admins and owners change them."""

    template_name = "organizations/settings.html"
    write_role = OrgRole.ADMIN

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["can_manage"] = self.membership.can_manage()

        # Public by design: security teams pin it to check signed audit exports.
        context["audit_signing_key"] = signing_key(self.organization)
        context["audit_archives"] = organization_archives(self.organization)
        context.setdefault(
            "form",
            OrganizationSettingsForm(
                initial={
                    "name": self.organization.name,
                    "max_token_days": self.organization.max_token_days,
                    "store_broker_input": self.organization.store_broker_input,
                    "require_mfa": self.organization.require_mfa,
                    "audit_retention_months": self.organization.audit_retention_months,
                }
            ),
        )
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = OrganizationSettingsForm(request.POST)
        if form.is_valid():
            try:
                services.organization_update(
                    organization=self.organization,
                    actor=request.user,
                    name=form.cleaned_data["name"],
                    max_token_days=form.cleaned_data["max_token_days"],
                    store_broker_input=form.cleaned_data["store_broker_input"],
                    require_mfa=form.cleaned_data["require_mfa"],
                    audit_retention_months=form.cleaned_data["audit_retention_months"],
                )
            except ValidationError as exc:
                _attach_errors(form, exc)
            else:
                messages.success(request, "Settings saved.")
                return redirect("orgs:settings", org_slug=self.organization.slug)
        return self.render_to_response(self.get_context_data(form=form), status=400)


# --- Invitation link (top level, /invitations/<key>/) ------------------------


class InvitationAcceptView(View):
    """The link from the invitation email. The key itself authorises the
    visitor to see which org invited them; accepting needs a logged-in user
    with the invited, verified email address."""

    template_name = "organizations/invitation_accept.html"

    def get(self, request: HttpRequest, key: str) -> HttpResponse:
        invitation = services.invitation_lookup(key)
        problem = services.invitation_problem(invitation)
        if problem:
            pending_key_forget(request)
            status = 404 if invitation is None else 410
            return render(request, self.template_name, {"problem": problem}, status=status)
        if not request.user.is_authenticated:
            # Remember it so sign-up joins this org instead of creating one.
            pending_key_remember(request, key)
        return render(request, self.template_name, {"invitation": invitation, "key": key})

    def post(self, request: HttpRequest, key: str) -> HttpResponse:
        if not request.user.is_authenticated:
            pending_key_remember(request, key)
            return redirect(f"{reverse('account_login')}?{urlencode({'next': request.path})}")
        try:
            membership = services.invitation_accept(key=key, user=request.user)
        except ValidationError as exc:
            invitation = services.invitation_lookup(key)
            return render(
                request,
                self.template_name,
                {"invitation": invitation, "key": key, "error": _error_text(exc)},
                status=400,
            )
        pending_key_forget(request)
        request.session["last_org"] = membership.organization.slug
        messages.success(
            request,
            f"Welcome to {membership.organization.name}. You are "
            f"{membership.get_role_display().lower()}.",
        )
        return redirect("orgs:overview", org_slug=membership.organization.slug)


class MyInvitationAcceptView(View):
    """Accept an invitation sent to one of your verified addresses, without the
    email's link (listed on the no-organization page)."""

    http_method_names = ("post",)

    def post(self, request: HttpRequest, invitation_id: int) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect("account_login")
        if not invitations_for_user(request.user).filter(pk=invitation_id).exists():
            raise Http404("No such invitation for you.")
        try:
            membership = services.invitation_accept(invitation_id=invitation_id, user=request.user)
        except ValidationError as exc:
            messages.error(request, _error_text(exc))
            return redirect(settings.LOGIN_REDIRECT_URL)  # home: the project names it
        request.session["last_org"] = membership.organization.slug
        messages.success(
            request,
            f"Welcome to {membership.organization.name}. You are "
            f"{membership.get_role_display().lower()}.",
        )
        return redirect("orgs:overview", org_slug=membership.organization.slug)
