"""Dashboard forms for custom providers and actions.

The model's validators and `clean()` run through ModelForm validation, so the
form shows the same errors the services would raise."""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from django import forms

from apps.providers.import_services import chosen_keys_of
from apps.providers.models import (
    BODY_ENCODING_CHOICES,
    HTTP_METHODS,
    ActionClassChoice,
    CustomAction,
    CustomProvider,
    scopes_text,
)
from apps.providers.services import IMPORT_FIELDS


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
    # Not stripped: the prefix's trailing space is part of it ("Bot " + token).
    header_prefix = forms.CharField(
        max_length=40,
        required=False,
        strip=False,
        help_text="Put before the credential in the custom header, e.g. 'Token ' (the space "
        "counts).",
    )

    class Meta:
        model = CustomProvider
        fields = (
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
        )
        widgets: ClassVar[dict[str, Any]] = {
            "api_base_url": forms.URLInput(attrs={"placeholder": "https://api.example.com/v1"}),
            "authorize_url": forms.URLInput(),
            "token_url": forms.URLInput(),
            "revocation_url": forms.URLInput(),
            "userinfo_url": forms.URLInput(),
        }
        help_texts: ClassVar[dict[str, str]] = {
            "authorize_url": "Required for OAuth 2.0.",
            "token_url": "Required for OAuth 2.0.",
            "header_name": "Used only with the custom-header placement.",
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
        fields = (
            "name",
            "description",
            "action_class",
            "method",
            "path",
            "input_schema",
            "scopes",
            "body_encoding",
        )
        widgets: ClassVar[dict[str, Any]] = {
            "description": forms.Textarea(attrs={"rows": 3}),
            "path": forms.TextInput(attrs={"placeholder": "/items/{item_id}"}),
        }

    def clean_body_encoding(self) -> str:
        return str(self.cleaned_data.get("body_encoding") or "json")

    def __init__(self, *args: Any, provider: CustomProvider, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance.provider = provider
        self.fields["body_encoding"].required = False  # JSON unless said otherwise
        if not self.is_bound:
            self.initial.setdefault("input_schema", EXAMPLE_SCHEMA)


# --- OpenAPI import ------------------------------------------------------------------


class OpenAPISourceForm(forms.Form):
    """Step 1: where the document comes from (an upload or a URL, exactly one)."""

    document = forms.FileField(
        label="OpenAPI document",
        required=False,
        help_text="An OpenAPI 3.0 / 3.1 or Swagger 2.0 file, JSON or YAML, bundled into one file.",
    )
    url = forms.URLField(
        label="…or its URL",
        required=False,
        assume_scheme="https",
        help_text="Fetched once from a public https address; redirects are not followed.",
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if bool(cleaned.get("document")) == bool(cleaned.get("url")):
            raise forms.ValidationError("Upload a document or give its URL (one of the two).")
        return cleaned


class OpenAPISelectionForm(forms.Form):
    """Step 2: which operations of the document to draft. Every criterion given narrows
    the choice; `operations` names them one by one. With the job's `index` the choice is
    checked against it (an unknown tag or key, no importable operation, or more than
    max_operations() is an error) and `chosen` holds the keys; without it (the API's
    one-shot import, before the document is read) only the shapes are checked."""

    tags = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)
    path_prefix = forms.CharField(
        label="Path prefix", max_length=300, required=False, help_text="e.g. /v1/customers"
    )
    methods = forms.MultipleChoiceField(
        required=False,
        choices=[(m, m) for m in HTTP_METHODS],
        widget=forms.CheckboxSelectMultiple,
    )
    search = forms.CharField(
        max_length=200, required=False, help_text="Words in the key, operation id or summary."
    )
    operations = forms.MultipleChoiceField(
        label="Operations", required=False, widget=forms.CheckboxSelectMultiple
    )

    def __init__(
        self, *args: Any, index: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.index = index
        tags: dict[str, int] = {}
        for op in index or []:
            for tag in op["tags"]:
                tags[tag] = tags.get(tag, 0) + 1
        self.tag_counts = sorted(tags.items())
        tag_field, key_field = self.fields["tags"], self.fields["operations"]
        assert isinstance(tag_field, forms.MultipleChoiceField)
        assert isinstance(key_field, forms.MultipleChoiceField)
        tag_field.choices = [(t, f"{t} ({n})") for t, n in self.tag_counts]
        key_field.choices = [(op["key"], op["key"]) for op in index or [] if not op["problem"]]
        if index is None:
            # Before the document is read, names cannot be checked against it.
            for name in ("tags", "operations"):
                self.fields[name] = forms.JSONField(required=False)
        self.chosen: list[str] = []

    def clean_path_prefix(self) -> str:
        prefix = str(self.cleaned_data.get("path_prefix") or "")
        if prefix and not prefix.startswith("/"):
            raise forms.ValidationError("A path prefix starts with '/'.")
        return prefix

    def _clean_names(self, name: str) -> list[str]:
        value = self.cleaned_data.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise forms.ValidationError("Give a list of names.")
        return value

    def clean_tags(self) -> list[str]:
        return self._clean_names("tags")

    def clean_operations(self) -> list[str]:
        return self._clean_names("operations")

    def selection(self) -> dict[str, Any]:
        return {k: v for k, v in self.cleaned_data.items() if v}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.index is not None and not self.errors:
            self.chosen = chosen_keys_of(self.index, self.selection())
        return cleaned


class ImportedActionForm(forms.Form):
    """Step 3: one drafted operation, to choose and edit before saving."""

    selected = forms.BooleanField(label="Import", required=False)
    # "GET /pets/{id}": the operation as the document names it; the method comes from it.
    key = forms.CharField(max_length=400, widget=forms.HiddenInput)
    name = forms.CharField(max_length=63)
    description = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
    action_class = forms.ChoiceField(label="Class", choices=ActionClassChoice.choices)
    path = forms.CharField(max_length=300)
    input_schema = JSONSchemaField(label="Input JSON Schema")
    query_params = ScopesField(
        label="Query parameters",
        help_text="Input keys a POST/PUT/PATCH sends in the query string.",
    )
    body_encoding = forms.ChoiceField(
        label="Body",
        choices=BODY_ENCODING_CHOICES,
        initial="json",
    )
    scopes = ScopesField(label="Scopes it needs")

    def clean_key(self) -> str:
        key = str(self.cleaned_data["key"])
        if key.split(" ", 1)[0] not in HTTP_METHODS:
            raise forms.ValidationError("Not an operation of the document.")
        return key

    @property
    def method(self) -> str:
        return str(self["key"].value() or "").split(" ", 1)[0]

    def import_fields(self) -> dict[str, Any]:
        data = {**self.cleaned_data, "method": self.cleaned_data["key"].split(" ", 1)[0]}
        return {k: data[k] for k in IMPORT_FIELDS}


ImportedActionFormSet = forms.formset_factory(ImportedActionForm, extra=0)
