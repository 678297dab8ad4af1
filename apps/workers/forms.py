"""Dashboard forms. The organization is never a field: views pass it in."""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.contrib.auth import get_user_model
from django.core.validators import MaxValueValidator

from apps.core.tokens import DEFAULT_TOKEN_DAYS, max_token_days
from apps.organizations.models import Organization
from apps.policies.models import Role
from apps.workers.dpop import jkt_from
from apps.workers.models import MAX_TRUST_MINUTES, TrustPreset, Worker
from apps.workers.services import ROLL_OVERLAPS

OVERLAP_LABELS = {
    "none": "No overlap: the old token stops now",
    "1h": "1 hour",
    "24h": "24 hours",
    "7d": "7 days",
}


class WorkerForm(forms.ModelForm):
    class Meta:
        model = Worker
        fields = ("name", "description", "owner", "default_role", "acts_for", "require_dpop")
        labels: ClassVar[dict[str, str]] = {"acts_for": "Acts for (on behalf of)"}
        help_texts: ClassVar[dict[str, str]] = {
            "acts_for": "The member this agent acts for, e.g. “Alice's coding agent”: rules "
            "with connection “on behalf of” use that member's personal connections, and "
            "every audit event names both. Leave empty for an agent that acts for no one. Changing "
            "it revokes the worker's tokens and turns its trust policies off.",
            "name": "Lowercase letters, digits and dashes, e.g. support-triage-bot.",
            "description": "What this agent does, so reviewers recognise it in the audit log.",
        }
        widgets: ClassVar[dict[str, Any]] = {"description": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.organization = organization
        members = get_user_model().objects.filter(memberships__organization=organization)
        self.fields["owner"].queryset = members.order_by("email")  # type: ignore[attr-defined]
        self.fields["owner"].label_from_instance = lambda user: user.email  # type: ignore[attr-defined]
        active = members.filter(is_active=True).order_by("email")
        self.fields["acts_for"].queryset = active  # type: ignore[attr-defined]
        self.fields["acts_for"].label_from_instance = lambda user: user.email  # type: ignore[attr-defined]
        self.fields["acts_for"].empty_label = "No one"  # type: ignore[attr-defined]
        self.fields["default_role"].queryset = Role.objects.filter(  # type: ignore[attr-defined]
            organization=organization
        )
        self.fields["default_role"].empty_label = None  # type: ignore[attr-defined]

    def validate_unique(self) -> None:
        """The service checks the name per organization (the org is not a form field)."""


EXPIRY_PRESETS = (1, 7, 30, 90)


class MintForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="What this token is for, e.g. “CI deploy” or “triage on Alice's laptop”.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    role = forms.ModelChoiceField(
        queryset=Role.objects.none(),
        required=False,
        empty_label="The worker's default role",
        help_text="What this token may do. Tokens cannot do more than their role allows.",
    )
    expires = forms.ChoiceField(label="Expires in", widget=forms.RadioSelect)
    expires_in_days = forms.IntegerField(label="Days", min_value=1, required=False)
    dpop_key = forms.CharField(
        label="Bind to a public key (DPoP)",
        required=False,
        max_length=4096,
        widget=forms.Textarea(attrs={"rows": 2, "autocomplete": "off", "spellcheck": "false"}),
        help_text="The agent's public key as a JWK (JSON), or its RFC 7638 thumbprint "
        "(`grantry dpop-key` prints both). The token then works only with DPoP proofs signed "
        "by that key. Required when the worker requires DPoP.",
    )

    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].queryset = Role.objects.filter(organization=organization)  # type: ignore[attr-defined]
        ceiling = max_token_days(organization)
        presets = [days for days in EXPIRY_PRESETS if days <= ceiling]
        expires = self.fields["expires"]
        expires.choices = [  # type: ignore[attr-defined]
            *((str(days), "1 day" if days == 1 else f"{days} days") for days in presets),
            ("custom", "Custom"),
        ]
        expires.initial = str(DEFAULT_TOKEN_DAYS) if DEFAULT_TOKEN_DAYS in presets else "custom"
        field = self.fields["expires_in_days"]
        field.widget.attrs["max"] = ceiling
        field.initial = min(DEFAULT_TOKEN_DAYS, ceiling)
        field.help_text = f"Every token expires: at most {ceiling} days in this organization."
        field.validators.append(MaxValueValidator(ceiling))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        expires = cleaned.get("expires")
        if expires == "custom":
            if not cleaned.get("expires_in_days"):
                self.add_error("expires_in_days", "Say in how many days the token expires.")
        elif expires:
            cleaned["expires_in_days"] = int(expires)
        return cleaned

    def clean_dpop_key(self) -> str:
        """The thumbprint of the key the token is bound to ("" for none)."""
        text = self.cleaned_data["dpop_key"].strip()
        try:
            return jkt_from(jwk=text) if text.startswith("{") else jkt_from(jkt=text)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


class RollForm(forms.Form):
    overlap = forms.ChoiceField(
        choices=[(key, OVERLAP_LABELS[key]) for key in ROLL_OVERLAPS],
        initial="24h",
        help_text="How long the old token keeps working, so agents can switch without downtime.",
    )


class TrustPolicyForm(forms.Form):
    """A trust policy from the worker's page; `conditions` is one `claim = value` a line."""

    preset = forms.ChoiceField(choices=TrustPreset.choices, initial=TrustPreset.GITHUB)
    issuer = forms.CharField(
        max_length=255,
        required=False,
        help_text="The issuer's URL (the tokens' `iss`). Fixed for GitHub Actions and GitLab CI; "
        "for Kubernetes, the cluster's service-account issuer.",
    )
    audience = forms.CharField(
        max_length=255,
        required=False,
        help_text="The `aud` the tokens carry. Empty: this Grantry's URL.",
    )
    conditions = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="One `claim = value` a line, all must match; a value may be a glob "
        "(`refs/heads/*`). GitHub: repository = acme/triage; GitLab: project_path = acme/triage; "
        "Kubernetes: sub = system:serviceaccount:agents:triage. Optional for a company IdP "
        "(e.g. email = *@acme.example).",
    )
    clients = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        label="MCP clients (company IdP only)",
        help_text="One OAuth client id a line: the MCP clients the IdP may issue ID-JAGs for "
        "(a client-id metadata URL, or the id Grantry gave a registered client).",
    )
    role = forms.ModelChoiceField(queryset=Role.objects.none(), empty_label=None)
    max_minutes = forms.IntegerField(
        min_value=1,
        max_value=MAX_TRUST_MINUTES,
        initial=15,
        label="Token lifetime (minutes, at most)",
    )

    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].queryset = Role.objects.filter(organization=organization)  # type: ignore[attr-defined]

    def clean_conditions(self) -> list[dict[str, str]]:
        conditions = []
        for line in self.cleaned_data["conditions"].splitlines():
            if not line.strip():
                continue
            claim, equals, value = line.partition("=")
            if not equals or not claim.strip() or not value.strip():
                raise forms.ValidationError(f"Write `claim = value`, not {line.strip()!r}.")
            conditions.append({"claim": claim.strip(), "value": value.strip()})
        return conditions

    def clean_clients(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["clients"].splitlines() if line.strip()]
