"""Dashboard forms for approvals. They only shape input; the services decide."""

from __future__ import annotations

from django import forms


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("deny", "Deny")])
    comment = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Recorded in the audit trail and shown to the agent.",
    )


class ApprovalSettingsForm(forms.Form):
    require_two_approvers = forms.BooleanField(
        required=False,
        label="Require two approvers",
        help_text="Every approval then needs two different approvers before the call can run.",
    )
    webhook_url = forms.URLField(
        required=False,
        max_length=2000,
        label="Webhook URL (e.g. a Slack incoming webhook)",
        help_text="Leave empty to keep the current one. Stored encrypted and never shown again.",
        assume_scheme="https",
    )
    webhook_secret = forms.CharField(
        required=False,
        min_length=16,
        max_length=200,
        label="Signing secret",
        widget=forms.PasswordInput(render_value=False),
        help_text="Requests carry X-Grantry-Signature: sha256=HMAC(secret, timestamp.body). "
        "Leave empty to keep the current one.",
    )
    remove_webhook = forms.BooleanField(required=False, label="Remove the webhook")
