"""Custom providers: OAuth2 or API-key SaaS an organization's admins define by hand.

A custom provider's catalog key is `custom-<slug>` (CUSTOM_PREFIX), so it can
never shadow a built-in provider. It holds no secrets: OAuth client ids and
secrets are the tenant's ProviderApp in apps.connections.

All validation lives here (`clean()` and the validators), so the dashboard
forms, the admin and the services enforce exactly the same rules.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from apps.core.models import TenantModel, TenantQuerySet, organization_key
from apps.providers.catalog import (
    ACTION_METHODS,
    MAX_SCHEMA_BYTES,
    PLACEHOLDER_RE,
    Action,
    ActionClass,
    AuthType,
    Placement,
    Provider,
    path_template_problem,
)

CUSTOM_PREFIX = "custom-"
HTTP_METHODS = ACTION_METHODS
BODY_ENCODING_CHOICES = [
    ("json", "JSON"),
    ("form", "Form-encoded (application/x-www-form-urlencoded)"),
]

slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$",
    "Use 1-40 lowercase letters, digits and hyphens (not at the start or end).",
)
action_name_validator = RegexValidator(
    r"^[a-z][a-z0-9_]{0,62}$",
    "Use lowercase letters, digits and underscores, starting with a letter (e.g. list_items).",
)
header_name_validator = RegexValidator(
    r"^[A-Za-z0-9-]{1,64}$", "A header name has only letters, digits and hyphens."
)
scope_validator = RegexValidator(r"^[\x21-\x7e]+$", "A scope has no spaces or control characters.")


def validate_provider_url(value: str) -> None:
    """https only, unless DEBUG or GRANTRY_EGRESS_ALLOW_LOOPBACK (dev/tests) allow http."""
    if not value:
        return
    parts = urlsplit(value)
    allow_http = settings.DEBUG or getattr(settings, "GRANTRY_EGRESS_ALLOW_LOOPBACK", False)
    allowed = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in allowed:
        raise ValidationError(
            "Use an https:// URL." if not allow_http else "Use an http:// or https:// URL.",
            code="scheme",
        )
    if not parts.hostname:
        raise ValidationError("The URL needs a host name.", code="host")
    if parts.username or parts.password:
        raise ValidationError("Do not put credentials in the URL.", code="userinfo")
    if parts.fragment:
        raise ValidationError("Remove the #fragment from the URL.", code="fragment")


def validate_scope_list(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ValidationError("Scopes must be a list of strings.", code="scopes")
    for scope in value:
        scope_validator(scope)


def validate_path_template(value: str) -> None:
    problem = path_template_problem(value)
    if problem:
        raise ValidationError(problem, code="path")


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("$ref", "$dynamicRef") and isinstance(v, str)]
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def validate_input_schema(value: Any) -> None:
    """A JSON Schema (draft 2020-12) for an object, with no remote references."""
    if not isinstance(value, dict):
        raise ValidationError("The input schema must be a JSON object.", code="schema")
    if len(json.dumps(value)) > MAX_SCHEMA_BYTES:
        raise ValidationError("The input schema is too large (max 20 kB).", code="schema")
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the top level"
        raise ValidationError(
            f"Not a valid JSON Schema at {where}: {exc.message[:200]}", code="schema"
        ) from None
    if value.get("type") != "object":
        raise ValidationError('The input schema needs "type": "object".', code="schema")
    properties = value.get("properties", {})
    if not isinstance(properties, dict):
        raise ValidationError('"properties" must be an object.', code="schema")
    if any(not ref.startswith("#") for ref in _refs(value)):
        raise ValidationError("Only local references ($ref: #/…) are allowed.", code="schema")


def scopes_text(scopes: list[str] | tuple[str, ...]) -> str:
    return " ".join(scopes)


class AuthTypeChoice(models.TextChoices):
    OAUTH2 = AuthType.OAUTH2.value, "OAuth 2.0"
    API_KEY = AuthType.API_KEY.value, "API key"


class PlacementChoice(models.TextChoices):
    # No query-string placement for custom providers: a secret in a URL ends up in logs.
    BEARER = Placement.BEARER.value, "Authorization: Bearer <credential>"
    HEADER = Placement.HEADER.value, "A custom header: <name>: <prefix><credential>"
    BASIC = (
        Placement.BASIC.value,
        "HTTP Basic auth: the credential as user name, or as user:password when it has a colon",
    )


class ActionClassChoice(models.TextChoices):
    READ = ActionClass.READ.value, "Read"
    WRITE = ActionClass.WRITE.value, "Write"


def initial_revision() -> int:
    return secrets.randbits(62)


class CustomProvider(TenantModel):
    organization = organization_key(related_name="custom_providers")
    slug = models.CharField(
        max_length=40,
        validators=[slug_validator],
        help_text="Lowercase letters, digits and hyphens, e.g. acme-crm. The catalog key becomes "
        "custom-acme-crm. It cannot be changed later.",
    )
    display_name = models.CharField(max_length=80)
    description = models.CharField(max_length=300, blank=True)
    auth_type = models.CharField(max_length=16, choices=AuthTypeChoice.choices)
    api_base_url = models.CharField(
        "API base URL",
        max_length=300,
        validators=[validate_provider_url],
        help_text="Action paths are appended to this, e.g. https://api.example.com/v1",
    )
    authorize_url = models.CharField(
        "Authorize URL", max_length=300, blank=True, validators=[validate_provider_url]
    )
    token_url = models.CharField(
        "Token URL", max_length=300, blank=True, validators=[validate_provider_url]
    )
    revocation_url = models.CharField(
        "Revocation URL",
        max_length=300,
        blank=True,
        validators=[validate_provider_url],
        help_text="RFC 7009 endpoint, if the provider has one.",
    )
    userinfo_url = models.CharField(
        "Identity URL",
        max_length=300,
        blank=True,
        validators=[validate_provider_url],
        help_text='A "who am I" endpoint Grantry calls (GET) after connecting and to check keys.',
    )
    userinfo_account_field = models.CharField(
        "Account field",
        max_length=100,
        blank=True,
        help_text="Dotted path to the account name in the identity response, e.g. user.email",
    )
    default_scopes = models.JSONField(default=list, blank=True, validators=[validate_scope_list])
    placement = models.CharField(
        max_length=16, choices=PlacementChoice.choices, default=PlacementChoice.BEARER
    )
    header_name = models.CharField(
        max_length=64, default="Authorization", validators=[header_name_validator]
    )
    header_prefix = models.CharField(max_length=40, default="Bearer ", blank=True)

    # Raised in the same transaction as every change to the provider or its actions
    # (apps.providers.services). The broker reads it on each call and keeps the built
    # provider per process under it (apps.providers.registry). It starts at a random
    # number, so a provider id that comes back (a restored backup) finds nothing cached.
    revision = models.PositiveBigIntegerField(default=initial_revision, editable=False)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "display_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "slug"], name="uniq_custom_provider_slug"
            )
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.key})"

    @property
    def key(self) -> str:
        return f"{CUSTOM_PREFIX}{self.slug}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.auth_type == AuthTypeChoice.OAUTH2:
            for name in ("authorize_url", "token_url"):
                if not getattr(self, name):
                    errors[name] = "An OAuth 2.0 provider needs this URL."
        if self.userinfo_account_field and not self.userinfo_url:
            errors["userinfo_url"] = "Set the identity URL, or clear the account field."
        if self.placement == PlacementChoice.HEADER and self.header_name.lower() in (
            "host",
            "content-length",
            "cookie",
            "transfer-encoding",
        ):
            errors["header_name"] = "This header cannot carry the credential."
        if errors:
            raise ValidationError(errors)

    def to_provider(self) -> Provider:
        placement = Placement(self.placement)
        return Provider(
            key=self.key,
            display_name=self.display_name,
            icon=self.display_name[:2].upper(),
            description=self.description,
            auth_types=(AuthType(self.auth_type),),
            api_base_url=self.api_base_url.rstrip("/"),
            placement=placement,
            header_name=self.header_name if placement == Placement.HEADER else "Authorization",
            header_prefix=(
                self.header_prefix
                if placement == Placement.HEADER
                else "Bearer "
                if placement == Placement.BEARER
                else ""
            ),
            authorize_url=self.authorize_url,
            token_url=self.token_url,
            revocation_url=self.revocation_url,
            userinfo_url=self.userinfo_url,
            userinfo_account_field=self.userinfo_account_field,
            default_scopes=tuple(self.default_scopes),
            actions=tuple(a.to_action(self.key) for a in self.actions.all()),
            is_custom=True,
        )


class CustomAction(models.Model):
    # Owned through its provider's organization (apps.core.models.tenant_rows).
    tenant_through = "provider"
    provider = models.ForeignKey(CustomProvider, on_delete=models.CASCADE, related_name="actions")
    name = models.CharField(
        max_length=63,
        validators=[action_name_validator],
        help_text="Lowercase with underscores, e.g. list_items. Agents call it as "
        "custom-KEY.list_items.",
    )
    description = models.TextField(
        max_length=2000,
        help_text="Written for an AI agent choosing a tool: what it does and returns.",
    )
    action_class = models.CharField(
        "Class", max_length=8, choices=ActionClassChoice.choices, default=ActionClassChoice.READ
    )
    method = models.CharField(max_length=8, choices=[(m, m) for m in HTTP_METHODS], default="GET")
    body_encoding = models.CharField(
        max_length=8,
        choices=BODY_ENCODING_CHOICES,
        default="json",
        help_text="How a POST, PUT or PATCH sends its body.",
    )
    path = models.CharField(
        max_length=300,
        validators=[validate_path_template],
        help_text="Appended to the API base URL; {name} placeholders come from the input.",
    )
    input_schema = models.JSONField(default=dict, validators=[validate_input_schema])
    scopes = models.JSONField(default=list, blank=True, validators=[validate_scope_list])
    # Input keys a POST/PUT/PATCH action sends in the query string instead of the body
    # (an OpenAPI import fills it). GET, HEAD and DELETE send every non-path key there anyway.
    query_params = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["provider", "name"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "name"], name="uniq_custom_action_name")
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        schema = self.input_schema if isinstance(self.input_schema, dict) else {}
        if isinstance(self.input_schema, dict) and "additionalProperties" not in schema:
            # Deny unknown input by default, like every built-in action.
            self.input_schema = schema = {**schema, "additionalProperties": False}
        properties = schema.get("properties") or {}
        required = schema.get("required") or []
        problems = [
            name
            for name in PLACEHOLDER_RE.findall(self.path or "")
            if not isinstance(properties, dict) or name not in properties or name not in required
        ]
        if problems:
            raise ValidationError(
                {
                    "input_schema": "Every path placeholder must be a required property of the "
                    f"schema; missing or optional: {', '.join(problems)}."
                }
            )
        query = self.query_params
        if not isinstance(query, list) or not all(isinstance(q, str) for q in query):
            raise ValidationError({"query_params": "Query parameters are a list of names."})
        path_keys = set(PLACEHOLDER_RE.findall(self.path or ""))
        strays = [q for q in query if q not in properties or q in path_keys]
        if strays:
            raise ValidationError(
                {
                    "query_params": "Query parameters must be non-path properties of the "
                    f"schema: {', '.join(strays)}."
                }
            )

    def to_action(self, provider_key: str) -> Action:
        properties = (self.input_schema or {}).get("properties") or {}
        path_keys = set(PLACEHOLDER_RE.findall(self.path))
        rest = tuple(k for k in properties if k not in path_keys)
        bodyless = self.method in ("GET", "HEAD", "DELETE")
        return Action(
            name=f"{provider_key}.{self.name}",
            description=self.description,
            action_class=ActionClass(self.action_class),
            method=self.method,
            path=self.path,
            input_schema=self.input_schema,
            scopes=tuple(self.scopes),
            query_params=(
                rest if bodyless else tuple(k for k in rest if k in (self.query_params or []))
            ),
            body_encoding=self.body_encoding,
            is_custom=True,
        )


class ImportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    READING = "reading", "Reading the document"
    CHOOSING = "choosing", "Waiting for a choice of operations"
    RESOLVING = "resolving", "Resolving the chosen operations"
    READY = "ready", "Ready to review"
    IMPORTED = "imported", "Imported"
    FAILED = "failed", "Failed"


# A reading is under way in these; a Celery task claims them (see services).
IMPORT_WORKING = (ImportStatus.QUEUED, ImportStatus.READING, ImportStatus.RESOLVING)


class OpenAPIImport(TenantModel):
    """One OpenAPI import into a custom provider, read in the background (apps.providers.
    tasks): the document, its index of operations, the admin's choice, the drafts of the
    chosen operations and how far the reading has got. Purged a day after its last change."""

    organization = organization_key(related_name="openapi_imports")
    provider = models.ForeignKey(
        CustomProvider, on_delete=models.CASCADE, related_name="openapi_imports"
    )
    status = models.CharField(
        max_length=10, choices=ImportStatus.choices, default=ImportStatus.QUEUED
    )
    origin = models.JSONField(default=dict)  # {"file": name} or {"url": url}
    document = models.BinaryField(default=b"")  # zlib-compressed; empty until fetched
    sha256 = models.CharField(max_length=64, blank=True)
    title = models.CharField(max_length=200, blank=True)
    version = models.CharField(max_length=40, blank=True)
    server_url = models.CharField(max_length=500, blank=True)
    operations = models.JSONField(default=list)  # the index: every operation found
    selection = models.JSONField(default=dict)  # the admin's criteria, as given
    chosen = models.JSONField(default=list)  # keys of the operations to draft
    drafts = models.JSONField(default=list)
    # API one-shot: import the chosen operations, with these edits, once drafted.
    auto_import = models.BooleanField(default=False)
    edits = models.JSONField(default=dict)
    created_actions = models.JSONField(default=list)
    progress_done = models.IntegerField(default=0)
    progress_total = models.IntegerField(default=0)
    error = models.TextField(max_length=2000, blank=True)
    error_details = models.JSONField(default=dict, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"OpenAPI import {self.pk} ({self.status})"

    @property
    def is_working(self) -> bool:
        return self.status in IMPORT_WORKING

    @property
    def percent(self) -> int:
        if not self.progress_total:
            return 100 if self.status in (ImportStatus.READY, ImportStatus.IMPORTED) else 0
        return min(100, int(self.progress_done * 100 / self.progress_total))

    def source(self) -> dict[str, str]:
        """What the audit event says of the document."""
        return {
            **{k: str(v)[:300] for k, v in self.origin.items()},
            "title": self.title,
            "version": self.version,
            "sha256": self.sha256,
        }
