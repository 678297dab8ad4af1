"""Helpers the connection services share: provider lookup, token expiry, identity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.connections import custody, oauth
from apps.core.egress import EgressError, egress_request
from apps.organizations.models import Organization
from apps.providers.catalog import Provider
from apps.providers.registry import get_provider, resolve_base_url_params

INVALID_GRANT_ERRORS = frozenset({"invalid_grant"})


def oauth_redirect_uri() -> str:
    """The one callback every provider app must register (shown in the dashboard)."""
    return f"{settings.GRANTRY_BASE_URL}/oauth/callback/"


def resolved_provider(
    key: str, *, organization: Organization | None, base_url_params: dict[str, Any] | None = None
) -> Provider:
    provider = get_provider(key, organization=organization)
    return resolve_base_url_params(provider, base_url_params or {})


# --- Connect: shared helpers ----------------------------------------------------------


class CredentialRejected(Exception):
    """The provider said the key/token is not valid (nothing was saved)."""


class ProviderUnreachable(Exception):
    """The identity check could not be made (nothing was saved)."""


def _token_expiry(token: dict[str, Any]) -> datetime | None:
    if token.get("expires_at"):
        return datetime.fromtimestamp(int(token["expires_at"]), tz=UTC)
    if token.get("expires_in"):
        return timezone.now() + timedelta(seconds=int(token["expires_in"]))
    return None


def identity_response(provider: Provider, applied: custody.AppliedAuth) -> Any:
    """The provider's identity call with a placed credential (through egress). Raises
    ProviderUnreachable when no answer came, or the provider has no identity call."""
    if not provider.userinfo_url:
        raise ProviderUnreachable(f"{provider.display_name} has no identity call to ask.")
    method = getattr(provider, "userinfo_method", "GET") or "GET"
    body = getattr(provider, "userinfo_body", None)
    headers = {
        "Accept": "application/json",
        **getattr(provider, "default_headers", {}),
        **applied.headers,
    }
    try:
        return egress_request(
            method, provider.userinfo_url, headers=headers, params=applied.params or None, json=body
        )
    except EgressError as exc:
        raise ProviderUnreachable(f"{provider.display_name} could not be reached: {exc}") from exc


def fetch_account_label(
    provider: Provider, secret: str, base_url_params: dict[str, Any] | None = None
) -> str:
    """Ask the provider who the credential belongs to. Raises CredentialRejected
    on 401/403, ProviderUnreachable on other failures. "" if no identity call."""
    if not provider.userinfo_url:
        return ""
    response = identity_response(
        provider, custody.place_credential(provider, secret, base_url_params)
    )
    if response.status_code in (401, 403):
        raise CredentialRejected(
            f"{provider.display_name} rejected the credential (HTTP {response.status_code})."
        )
    if not response.is_success():
        raise ProviderUnreachable(
            f"{provider.display_name} answered the identity check with HTTP {response.status_code}."
        )
    try:
        return oauth.account_from_identity(provider, response.json())
    except ValueError:
        return ""
