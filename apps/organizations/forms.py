from __future__ import annotations

from django import forms

from apps.audit.services.archive import RETENTION_MAX_MONTHS
from apps.organizations.models import Membership, OrgRole
from apps.organizations.services import MAX_TOKEN_DAYS_LIMIT, RETENTION_MESSAGE


def role_choices(actor: Membership) -> list[tuple[str, str]]:
    """Only an owner may hand out the owner role."""
    return [
        (value, label)
        for value, label in OrgRole.choices
        if value != OrgRole.OWNER or actor.role == OrgRole.OWNER
    ]


class InvitationForm(forms.Form):
    email = forms.EmailField(label="Email address", max_length=254)
    role = forms.ChoiceField(label="Role", choices=OrgRole.choices, initial=OrgRole.MEMBER)

    def __init__(self, *args: object, actor: Membership, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["role"].choices = role_choices(actor)  # type: ignore[attr-defined]


class RoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=OrgRole.choices)

    def __init__(self, *args: object, actor: Membership, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["role"].choices = role_choices(actor)  # type: ignore[attr-defined]


class OrganizationSettingsForm(forms.Form):
    name = forms.CharField(label="Organization name", max_length=120)
    store_broker_input = forms.BooleanField(
        label="Store raw broker input",
        required=False,
        help_text="Keep the input agents send with each call in the audit trail, for "
        "investigations. Off: only a SHA-256 digest is kept. Inputs can hold personal "
        "data: turn on only if your policy allows it. Changing it is audited.",
    )
    max_token_days = forms.IntegerField(
        label="Longest worker token lifetime (days)",
        required=False,
        min_value=1,
        max_value=MAX_TOKEN_DAYS_LIMIT,
        help_text=f"Between 1 and {MAX_TOKEN_DAYS_LIMIT} days. Leave empty for the "
        f"maximum ({MAX_TOKEN_DAYS_LIMIT} days).",
    )
    audit_retention_months = forms.IntegerField(
        label="Audit trail retention (months)",
        required=False,
        min_value=1,
        max_value=RETENTION_MAX_MONTHS,
        error_messages={
            "min_value": RETENTION_MESSAGE,
            "max_value": RETENTION_MESSAGE,
            "invalid": RETENTION_MESSAGE,
        },
        help_text="How many whole months after a month ends its audit events stay in the "
        "live trail. Then they are archived, verified, and leave the database with their "
        "month once every organization's retention has passed. Empty: kept for ever. "
        "Changing it is audited.",
    )
    require_mfa = forms.BooleanField(
        label="Require two-factor authentication",
        required=False,
        help_text="Members without an authenticator app or a passkey are sent to set one up "
        "before they can use this organization's dashboard or management API.",
    )
