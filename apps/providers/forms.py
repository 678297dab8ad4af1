"""Dashboard forms for custom providers and actions.

The model's validators and `clean()` run through ModelForm validation, so the
form shows the same errors the services would raise."""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms

from apps.providers.models import CustomAction, CustomProvider, scopes_text


def _split_scopes(value: str) -> list[str]:
    return [s for s in re.split(r"[\s,]+", value or "") if s]


class ScopesField(forms.CharField):
    """Scopes typed as text, separated by spaces or commas; stored as a list."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", "Separate scopes with spaces or commas, e.g. read write.")
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return scopes_text(value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, (list, tuple)):
            return list(value)
        return _split_scopes(super().to_python(value) or "")


class CustomProviderForm(forms.ModelForm):
    default_scopes = ScopesField(label="Default scopes")

    class Meta:
        model = CustomProvider
        fields = [
            "display_name",
            "slug",
            "description",
            "auth_type",
            "api_base_url",
            "authorize_url",
            "token_url",
            "revocation_url",
            "userinfo_url",
            "userinfo_account_field",
            "default_scopes",
            "placement",
            "header_name",
            "header_prefix",
        ]
        widgets = {
            "api_base_url": forms.URLInput(attrs={"placeholder": "https://api.example.com/v1"}),
            "authorize_url": forms.URLInput(),
            "token_url": forms.URLInput(),
            "revocation_url": forms.URLInput(),
            "userinfo_url": forms.URLInput(),
        }
        help_texts = {
            "authorize_url": "Required for OAuth 2.0.",
            "token_url": "Required for OAuth 2.0.",
            "header_name": "Used only with the custom-header placement.",
            "header_prefix": "Put before the credential in the custom header, e.g. 'Token '.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # The key is referenced by rules and connections: it never changes.
            del self.fields["slug"]
        else:
            self.fields["slug"].label = "Key"


class JSONSchemaField(forms.CharField):
    widget = forms.Textarea(attrs={"rows": 12, "spellcheck": "false"})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return json.dumps(value, indent=2)
        return value

    def to_python(self, value: Any) -> Any:
        if isinstance(value, dict):
            return value
        text = super().to_python(value)
        if not text:
            return {"type": "object", "properties": {}, "additionalProperties": False}
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"This is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."
            ) from None


EXAMPLE_SCHEMA = {
    "type": "object",
    "properties": {
        "item_id": {"type": "integer", "description": "Id of the item to fetch."},
    },
    "required": ["item_id"],
    "additionalProperties": False,
}


class CustomActionForm(forms.ModelForm):
    input_schema = JSONSchemaField(
        label="Input JSON Schema",
        required=False,
        help_text=(
            'A JSON Schema object ("type": "object") with a description on each property. '
            "Every {placeholder} in the path must be a required property. Unknown input is "
            'refused unless you set "additionalProperties". GET and DELETE send the other '
            "properties as query parameters, other methods as a JSON body."
        ),
    )
    scopes = ScopesField(label="Scopes it needs")

    class Meta:
        model = CustomAction
        fields = ["name", "description", "action_class", "method", "path", "input_schema", "scopes"]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 3}),
            "path": forms.TextInput(attrs={"placeholder": "/items/{item_id}"}),
        }

    def __init__(self, *args: Any, provider: CustomProvider, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance.provider = provider
        if not self.is_bound:
            self.initial.setdefault("input_schema", EXAMPLE_SCHEMA)
