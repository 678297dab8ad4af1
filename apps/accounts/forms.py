from __future__ import annotations

from typing import Any

from allauth.account.forms import SignupForm as AllauthSignupForm
from django import forms
from django.db import transaction
from django.http import HttpRequest


class SignupForm(AllauthSignupForm):
    """Allauth's sign-up plus the name of the organization the new user will own.

    Someone who arrived through an invitation link joins that organization
    instead, so the name is optional (see AccountAdapter.save_user)."""

    organization_name = forms.CharField(
        label="Organization name",
        max_length=120,
        required=False,
        help_text="Your team or company. Leave empty to use your email domain; "
        "leave empty too if you were invited to an existing organization.",
        widget=forms.TextInput(attrs={"autocomplete": "organization"}),
    )

    field_order = ("email", "organization_name", "password1", "password2")

    @transaction.atomic
    def save(self, request: HttpRequest) -> Any:
        # The user, their organization, membership, email address and audit
        # events are written together or not at all.
        return super().save(request)
