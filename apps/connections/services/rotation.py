"""Rotating an API key: give a connection its new key, keep the old one (encrypted, in
custody) only until the provider confirms it is dead, then blank it.

The migration off raw keys (apps.inventory) uses these: a key imported from an agent's
config becomes a connection's key; once the admin has made a new key at the provider,
`connection_replace_api_key` swaps it in and retires the old one, and
`retired_key_is_dead` / `retired_key_confirm_dead` prove the old one now fails."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.connections import custody
from apps.connections.models import Connection, ConnectionStatus, RetiredCredential
from apps.connections.services.common import (
    ProviderUnreachable,
    fetch_account_label,
    identity_response,
    resolved_provider,
)
from apps.organizations.models import Organization
from apps.providers.catalog import AuthType


def connection_replace_api_key(
    *, organization: Organization, connection_id: int, api_key: str, actor: Any = None
) -> tuple[Connection, RetiredCredential]:
    """Check the new key with the provider's identity call (CredentialRejected: nothing
    changes), then, in one transaction, retire the old key and store the new one."""
    connection = Connection.objects.for_organization(organization).get(pk=connection_id)
    if connection.auth_type != AuthType.API_KEY:
        raise ValidationError({"api_key": ["This connection does not use an API key."]})
    api_key = api_key.strip()
    if custody.api_key_is(connection, api_key):
        raise ValidationError(
            {"api_key": ["The connection already holds this key: make a new one at the provider."]}
        )
    params = dict(connection.base_url_params)
    provider = resolved_provider(
        connection.provider_key, organization=organization, base_url_params=params
    )
    account_label = fetch_account_label(provider, api_key, params)
    return _replace(
        organization=organization,
        connection_id=connection_id,
        api_key=api_key,
        account_label=account_label,
        actor=actor,
    )


@transaction.atomic
def _replace(
    *, organization: Organization, connection_id: int, api_key: str, account_label: str, actor: Any
) -> tuple[Connection, RetiredCredential]:
    connection = (
        Connection.objects.for_organization(organization).select_for_update().get(pk=connection_id)
    )
    retired = custody.retire_api_key(connection)
    retired.created_by = actor if getattr(actor, "pk", None) else None
    retired.save()
    connection.api_key = api_key
    connection.account_label = account_label or connection.account_label
    connection.status = ConnectionStatus.ACTIVE
    connection.status_detail = ""
    connection.save()
    audit_record(
        action="connection.key_replaced",
        organization=organization,
        target=connection,
        connection_id=connection.pk,
        provider=connection.provider_key,
        actor=actor,
        metadata={"retired_key": retired.pk, "account": connection.account_label},
    )
    return connection, retired


def retired_key_is_dead(*, retired: RetiredCredential) -> bool:
    """Ask the provider's identity call with the old key: True on 401/403, False when it
    still works. Raises ProviderUnreachable for any other answer (nothing is concluded)."""
    if not retired.secret:
        return retired.confirmed_dead_at is not None
    provider = resolved_provider(
        retired.provider_key,
        organization=retired.organization,
        base_url_params=retired.base_url_params,
    )
    response = identity_response(provider, custody.retired_key_auth(retired, provider))
    if response.status_code in (401, 403):
        return True
    if response.is_success():
        return False
    raise ProviderUnreachable(
        f"{provider.display_name} answered the check with HTTP {response.status_code}."
    )


def retired_key_confirm_dead(*, retired: RetiredCredential, actor: Any = None) -> RetiredCredential:
    """Record that the provider refuses the old key and blank it. Runs in the caller's
    transaction (the caller records why)."""
    locked = RetiredCredential.objects.select_for_update().get(pk=retired.pk)
    now = timezone.now()
    locked.confirmed_dead_at = locked.confirmed_dead_at or now
    locked.last_check = f"Refused by the provider at {now:%Y-%m-%d %H:%M} UTC."
    custody.purge_retired_key(locked)
    locked.purged_at = now
    locked.save()
    audit_record(
        action="connection.retired_key_purged",
        organization_id=locked.organization_id,
        target_type="connection",
        target_id=locked.connection_id,
        connection_id=locked.connection_id,
        provider=locked.provider_key,
        actor=actor,
        metadata={"retired_key": locked.pk},
    )
    return locked
