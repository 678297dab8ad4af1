"""Personal API token pages (/accounts/tokens/): list, mint (shown once), revoke.

A personal token belongs to the signed-in user and one of their organizations;
it acts with their current org role there. Only its owner sees or revokes it."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views import View
from django.views.generic import FormView

from apps.accounts.selectors import personal_tokens_of
from apps.accounts.services import personal_token_mint, personal_token_revoke
from apps.core.confirm import Confirmation, confirmation_page, is_confirmed
from apps.core.pagination import KeysetListMixin
from apps.core.tokens import DEFAULT_TOKEN_DAYS, MAX_TOKEN_DAYS
from apps.organizations.models import Organization

SESSION_KEY = "accounts:minted-personal-token"


class PersonalTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100, help_text="What this token is for, e.g. 'terraform' or 'CI sync'."
    )
    organization = forms.ModelChoiceField(
        queryset=Organization.objects.none(),
        empty_label=None,
        help_text="The token works only for this organization, with your role there.",
    )
    expires_in_days = forms.IntegerField(
        label="Expires in (days)",
        min_value=1,
        max_value=MAX_TOKEN_DAYS,
        initial=DEFAULT_TOKEN_DAYS,
        help_text="Every token expires (at most 366 days, or less if the organization says so).",
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["organization"].queryset = Organization.objects.filter(  # type: ignore[attr-defined]
            memberships__user=user
        ).order_by("name")


class PersonalTokenListView(LoginRequiredMixin, KeysetListMixin, FormView):
    template_name = "accounts/tokens/list.html"
    keyset_order = "id"
    keyset_descending = True
    form_class = PersonalTokenForm

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "user": self.request.user}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        page = self.paginate(personal_tokens_of(self.request.user).select_related("organization"))
        context.update(page=page, tokens=page.rows)
        minted = self.request.session.pop(SESSION_KEY, None)
        if minted is not None:
            context["minted"] = minted
            context["api_base"] = f"{settings.GRANTRY_BASE_URL}/api/v1/orgs/{minted['org_slug']}"
        return context

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().get(request, *args, **kwargs)
        add_never_cache_headers(response)
        response["Cache-Control"] = "no-store, no-cache, must-revalidate, private, max-age=0"
        return response

    def form_valid(self, form: PersonalTokenForm) -> HttpResponse:
        try:
            token, raw = personal_token_mint(
                user=self.request.user,
                organization=form.cleaned_data["organization"],
                name=form.cleaned_data["name"],
                expires_in_days=form.cleaned_data["expires_in_days"],
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
            return self.form_invalid(form)
        self.request.session[SESSION_KEY] = {
            "raw": raw,
            "public_id": token.public_id,
            "name": token.name,
            "org_slug": token.organization.slug,
        }
        return redirect("personal_tokens:list")


class PersonalTokenRevokeView(LoginRequiredMixin, View):
    def post(self, request: HttpRequest, public_id: str) -> HttpResponse:
        # Only the owner's own tokens resolve; anyone else's id is a 404.
        token = get_object_or_404(personal_tokens_of(request.user), public_id=public_id)
        if not is_confirmed(request):
            used = (
                f"last used {token.last_used_at:%Y-%m-%d %H:%M} UTC"
                if token.last_used_at
                else "never used"
            )
            confirmation = Confirmation(
                title=f"Revoke personal token {token.name}?",
                stops=[
                    f"Scripts using {token.name} ({token.public_id}, …{token.last4}) in "
                    f"{token.organization.name} stop working immediately; it was {used}."
                ],
                button="Revoke token",
                cancel_url=reverse("personal_tokens:list"),
            )
            return confirmation_page(request, confirmation, {})
        personal_token_revoke(token=token, actor=request.user)
        messages.success(request, f"Token {token.name} ({token.public_id}) revoked.")
        return redirect("personal_tokens:list")
