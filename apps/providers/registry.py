"""The one way to look up providers and actions.

    get_provider(key, organization=None) -> Provider      raises UnknownProvider
    get_action(name, organization=None) -> Action         raises UnknownAction
    all_providers(organization=None) / all_actions(organization=None)

Built-in providers are always visible. With `organization`, that org's custom
providers are visible too; their keys are `custom-<slug>` (see
apps.providers.models.CUSTOM_PREFIX), so a custom provider can never shadow a
built-in one, today or after a future built-in is added.

URL overrides (self-hosting, tests) are applied at lookup time from
`settings.GRANTRY_PROVIDER_URLS`, a dict of `spec -> url`:

    "github": "https://ghe.example.com/api/v3"                      # API base URL
    "github.authorize_url": "https://ghe.example.com/login/oauth/authorize"
    "github.token_url": "https://ghe.example.com/login/oauth/access_token"

A bare key overrides `api_base_url`; `key.field` overrides one of
api_base_url, authorize_url, token_url, revocation_url, userinfo_url. A value
may also be a dict {field: url} (handy in Python settings). In the environment
it is `GRANTRY_PROVIDER_URLS="github=https://…,github.token_url=https://…"`.
Tests use `override_settings(GRANTRY_PROVIDER_URLS={...})`.

The Sandbox provider lives at `settings.GRANTRY_SANDBOX_URL` and is listed only
while `settings.GRANTRY_SANDBOX_ENABLED`.

Request building and input validation live in apps.providers.calls and are
re-exported here so callers need one import.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection as db_connection
from django.db.models import F

from apps.providers.calls import (
    BaseURLParamError,
    FieldError,
    InvalidInput,
    PreparedCall,
    build_request,
    resolve_base_url_params,
    validate_input,
)
from apps.providers.catalog import Action, Provider
from apps.providers.definitions import BUILTIN_PROVIDERS
from apps.providers.definitions.sandbox import sandbox_provider

if TYPE_CHECKING:
    from apps.organizations.models import Organization

__all__ = [
    "OVERRIDABLE_FIELDS",
    "BaseURLParamError",
    "FieldError",
    "InvalidInput",
    "PreparedCall",
    "UnknownAction",
    "UnknownProvider",
    "all_actions",
    "all_providers",
    "build_request",
    "builtin_keys",
    "get_action",
    "get_provider",
    "resolve_base_url_params",
    "validate_input",
]

OVERRIDABLE_FIELDS = frozenset(
    {"api_base_url", "authorize_url", "token_url", "revocation_url", "userinfo_url"}
)


class UnknownProvider(LookupError):
    def __init__(self, key: str) -> None:
        super().__init__(f"Unknown provider '{key}'.")
        self.key = key


class UnknownAction(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown action '{name}'.")
        self.name = name


# --- built-ins with overrides applied ----------------------------------------------


def _parse_overrides(raw: Any) -> dict[str, dict[str, str]]:
    overrides: dict[str, dict[str, str]] = {}
    for spec, value in (raw or {}).items():
        key, _, field_name = str(spec).partition(".")
        items = (
            value.items() if isinstance(value, dict) else [(field_name or "api_base_url", value)]
        )
        for name, url in items:
            if name not in OVERRIDABLE_FIELDS:
                raise ImproperlyConfigured(
                    f"GRANTRY_PROVIDER_URLS: '{spec}' names no overridable URL field "
                    f"(one of {', '.join(sorted(OVERRIDABLE_FIELDS))})."
                )
            overrides.setdefault(key, {})[name] = str(url)
    return overrides


def _sandbox_url() -> str:
    default = f"{getattr(settings, 'GRANTRY_BASE_URL', '').rstrip('/')}/sandbox"
    return str(getattr(settings, "GRANTRY_SANDBOX_URL", "") or default)


def _finish(provider: Provider, overrides: dict[str, Any]) -> Provider:
    if overrides:
        provider = replace(provider, **overrides)
    if provider.userinfo_url.startswith("/"):
        provider = replace(
            provider, userinfo_url=provider.api_base_url.rstrip("/") + provider.userinfo_url
        )
    return provider


@dataclass(frozen=True)
class _Index:
    key: str
    providers: dict[str, Provider]
    actions: dict[str, Action]


# Replaced as a whole (one assignment), so a reader never sees half an index.
_index: _Index | None = None


def _builtin_index() -> _Index:
    """Built-in providers and actions, rebuilt only when the relevant settings change
    (override_settings in tests; never in a running process otherwise)."""
    global _index
    raw = getattr(settings, "GRANTRY_PROVIDER_URLS", {}) or {}
    sandbox_on = bool(getattr(settings, "GRANTRY_SANDBOX_ENABLED", False))
    cache_key = repr(
        (sorted((str(k), repr(v)) for k, v in raw.items()), _sandbox_url(), sandbox_on)
    )
    index = _index
    if index is None or index.key != cache_key:
        overrides = _parse_overrides(raw)
        providers = list(BUILTIN_PROVIDERS)
        if sandbox_on:
            providers.append(sandbox_provider(_sandbox_url()))
        by_key = {p.key: _finish(p, overrides.get(p.key, {})) for p in providers}
        actions = {a.name: a for p in by_key.values() for a in p.actions}
        index = _index = _Index(cache_key, by_key, actions)
    return index


def _builtins() -> dict[str, Provider]:
    return _builtin_index().providers


def builtin_keys() -> frozenset[str]:
    return frozenset(_builtins())


# --- custom providers -------------------------------------------------------------


def _custom_providers(organization: Organization | int | None) -> list[Provider]:
    if organization is None:
        return []
    from apps.providers.models import CustomProvider

    queryset = CustomProvider.objects.for_organization(organization).prefetch_related("actions")
    return [custom.to_provider() for custom in queryset]


# The broker's lookup of one custom provider (every call of a custom action): one small
# statement reads the provider's id and revision, and each process keeps the provider it
# built per (organization, slug) under them, as policies.selectors keeps a role's rules
# under its rules_version. Every service that changes a provider or its actions raises the
# revision in its transaction (`bump_revision`), so a process sees the change on its next
# call; LOCAL_TTL_SECONDS bounds an entry's life in case a change ever bypasses them.
LOCAL_TTL_SECONDS = 300
LOCAL_MAX_PROVIDERS = 1024
# (organization id, slug) -> (provider id, revision, provider, monotonic expiry)
_local_custom: dict[tuple[int, str], tuple[int, int, Provider, float]] = {}
_local_lock = threading.Lock()


def _revision_sql() -> str:
    from apps.providers.models import CustomProvider

    # Model metadata only; the organization and slug are parameters.
    return (
        f"SELECT id, revision FROM {CustomProvider._meta.db_table}"  # noqa: S608 - metadata
        " WHERE organization_id = %s AND slug = %s"
    )


def bump_revision(provider_id: int) -> None:
    """Call inside the transaction that changes a custom provider or its actions."""
    from apps.providers.models import CustomProvider

    CustomProvider.objects.filter(pk=provider_id).update(revision=F("revision") + 1)


def _custom_provider(organization: Organization | int, key: str) -> Provider | None:
    """One custom provider by key: one statement when this process holds its current
    revision, three (the revision, the provider and its actions) when it does not."""
    from apps.providers.models import CUSTOM_PREFIX, CustomProvider

    if not key.startswith(CUSTOM_PREFIX):
        return None
    slug = key[len(CUSTOM_PREFIX) :]
    organization_id = organization if isinstance(organization, int) else organization.pk
    with db_connection.cursor() as cursor:
        cursor.execute(_revision_sql(), [organization_id, slug])
        row = cursor.fetchone()
    if row is None:
        return None
    provider_id, revision = row
    local = _local_custom.get((organization_id, slug))
    now = time.monotonic()
    if local is not None and local[:2] == (provider_id, revision) and local[3] > now:
        return local[2]
    # Built after `revision` was read, so at least that new (a racing thread storing an
    # older entry last only costs the next call a rebuild).
    custom = CustomProvider.objects.prefetch_related("actions").filter(pk=provider_id).first()
    if custom is None:
        return None
    provider = custom.to_provider()
    with _local_lock:
        if len(_local_custom) >= LOCAL_MAX_PROVIDERS:
            _local_custom.clear()
        _local_custom[(organization_id, slug)] = (
            provider_id,
            revision,
            provider,
            now + LOCAL_TTL_SECONDS,
        )
    return provider


# --- the interface ----------------------------------------------------------------


def get_provider(key: str, *, organization: Organization | int | None = None) -> Provider:
    provider = _builtins().get(key)
    if provider is not None:
        return provider
    custom = _custom_provider(organization, key) if organization is not None else None
    if custom is not None:
        return custom
    raise UnknownProvider(key)


def get_action(name: str, *, organization: Organization | int | None = None) -> Action:
    return resolve_action(name, organization=organization)[1]


def resolve_action(
    name: str, *, organization: Organization | int | None = None
) -> tuple[Provider, Action]:
    """The action and its provider, with at most one query (a custom provider's)."""
    builtin = _builtin_index().actions.get(name)
    if builtin is not None:
        return _builtins()[builtin.provider_key], builtin
    key, dot, short = name.partition(".")
    if not dot or not short:
        raise UnknownAction(name)
    try:
        provider = get_provider(key, organization=organization)
    except UnknownProvider:
        raise UnknownAction(name) from None
    action = provider.action(name)
    if action is None:
        raise UnknownAction(name)
    return provider, action


def all_providers(*, organization: Organization | None = None) -> list[Provider]:
    """Built-ins by display name, then the organization's custom providers."""
    builtins = sorted(_builtins().values(), key=lambda p: p.display_name.lower())
    return builtins + _custom_providers(organization)


def all_actions(*, organization: Organization | None = None) -> list[Action]:
    return [
        action
        for provider in all_providers(organization=organization)
        for action in provider.actions
    ]
