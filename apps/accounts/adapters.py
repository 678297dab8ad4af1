from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.db import transaction
from django.forms import BaseForm
from django.http import HttpRequest
from django.urls import reverse

from apps.accounts import events
from apps.organizations.invitations import pending_invitation, pending_key
from apps.organizations.services import organization_create


def organization_name_for(email: str, given: str = "") -> str:
    """The name the user typed, else one derived from their email domain."""
    if given.strip():
        return given.strip()
    domain = email.rpartition("@")[2].lower()
    label = domain.split(".")[0] if domain else ""
    return label.replace("-", " ").title() or "My organization"


def _invitation_url(request: HttpRequest) -> str | None:
    """Someone who opened an invitation logged out goes back to it to accept."""
    key = pending_key(request)
    if key and pending_invitation(request) is not None:
        return reverse("invitations:accept", kwargs={"key": key})
    return None


class AccountAdapter(DefaultAccountAdapter):
    """Grantry's hooks into allauth: sign-up creates the user's organization
    (unless they came through an invitation) and failed logins are audited."""

    @transaction.atomic
    def save_user(
        self, request: HttpRequest, user: Any, form: BaseForm, commit: bool = True
    ) -> Any:
        user = super().save_user(request, user, form, commit=commit)
        if not commit:
            return user
        invitation = pending_invitation(request)
        if invitation is not None and invitation.email.lower() == (user.email or "").lower():
            # They join the inviting org from the invitation page once verified.
            return user
        data = getattr(form, "cleaned_data", {})
        organization_create(
            name=organization_name_for(user.email or "", data.get("organization_name", "")),
            owner=user,
        )
        return user

    def format_email_subject(self, subject: str) -> str:
        """'[Grantry] Please confirm …', not the site's host and port."""
        return f"[Grantry] {subject}"

    def get_login_redirect_url(self, request: HttpRequest) -> str:
        return _invitation_url(request) or super().get_login_redirect_url(request)

    def get_signup_redirect_url(self, request: HttpRequest) -> str:
        return _invitation_url(request) or super().get_signup_redirect_url(request)

    def authentication_failed(self, request: HttpRequest, **credentials: Any) -> None:
        super().authentication_failed(request, **credentials)
        events.login_failed(email=str(credentials.get("email") or ""))
