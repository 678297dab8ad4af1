"""Dashboard forms. Secret inputs are write-only: never rendered back."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.validators import validate_slug

from apps.connections.models import ON_BEHALF_OF, Connection
from apps.organizations.models import Organization


class _NameMixin(forms.Form):
    name = forms.CharField(
        max_length=60,
        validators=[validate_slug],
        help_text="Short unique name workers and roles refer to, e.g. github-main. "
        "Letters, digits, hyphens and underscores.",
    )

    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.organization = organization

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip().lower()
        if name == ON_BEHALF_OF:
            raise forms.ValidationError(
                f"'{ON_BEHALF_OF}' is what a rule says for a member's personal connection. "
                "Pick another name."
            )
        if Connection.objects.for_organization(self.organization).filter(name=name).exists():
            raise forms.ValidationError(
                f"A connection named '{name}' already exists. Pick another name, or use "
                "Reconnect on the existing one."
            )
        return name


class ConnectionNameForm(_NameMixin):
    """Only a new connection's name: the inventory's import (its key comes from the
    `grantry` CLI and is checked by the service)."""


class _URLParamsMixin(_NameMixin):
    """Per-connection URL parameters a provider declares (e.g. Zendesk's subdomain)."""

    def __init__(self, *args: Any, url_params: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url_params = url_params
        for param in url_params:
            self.fields[f"param_{param}"] = forms.CharField(
                label=param.replace("_", " ").capitalize(),
                max_length=100,
                help_text=f"Your account's {param} (part of the provider's API address).",
            )

    def base_url_params(self) -> dict[str, str]:
        return {p: self.cleaned_data[f"param_{p}"].strip() for p in self.url_params}


class ConnectOAuthForm(_URLParamsMixin):
    pass


class ConnectApiKeyForm(_URLParamsMixin):
    api_key = forms.CharField(
        label="API key or token",
        strip=True,
        max_length=4000,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Checked with the provider before it is saved. It is stored encrypted "
        "and never shown again.",
    )


class ProviderAppForm(forms.Form):
    client_id = forms.CharField(label="Client ID", max_length=300)
    client_secret = forms.CharField(
        label="Client secret",
        required=False,
        max_length=2000,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )

    def __init__(self, *args: Any, has_secret: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.has_secret = has_secret
        self.fields["client_secret"].help_text = (
            "A secret is stored. Leave empty to keep it; type a new one to replace it."
            if has_secret
            else "From the provider's developer console. Stored encrypted, never shown again."
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not self.has_secret and not cleaned.get("client_secret"):
            self.add_error("client_secret", "Enter the client secret.")
        return cleaned
