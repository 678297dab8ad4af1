"""Disconnecting (revocation at the provider, then destroying secrets) and usage marks."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.audit.models import Outcome
from apps.audit.services import audit_record
from apps.connections import custody, oauth
from apps.connections.models import (
    MCP_PROVIDER_KEY,
    Connection,
    ConnectionStatus,
    McpServer,
    RetiredCredential,
    RevocationResult,
)
from apps.connections.services.common import resolved_provider
from apps.organizations.models import Organization

# The inventory's "last used" is written at most this often per connection.
USED_THROTTLE = timedelta(seconds=60)

# --- Disconnect --------------------------------------------------------------------------


def _revoke_at_provider(connection: Connection, organization: Organization) -> tuple[str, str]:
    """Revoke every token the connection holds that the provider's endpoint takes (RFC 7009
    or the provider's own shape, see `Provider.revocation`): (RevocationResult, failure)."""
    if not connection.is_oauth():
        return RevocationResult.UNSUPPORTED, ""
    if connection.provider_key == MCP_PROVIDER_KEY:  # an upstream MCP server's own AS
        server = McpServer.objects.get(pk=connection.pk)
        provider = server.oauth_provider()
        creds = custody.mcp_client_credentials(server)
        if not provider.supports_revocation:
            return RevocationResult.UNSUPPORTED, ""
    else:
        provider = resolved_provider(
            connection.provider_key,
            organization=organization,
            base_url_params=connection.base_url_params,
        )
        app = connection.provider_app
        if not provider.supports_revocation or app is None:
            return RevocationResult.UNSUPPORTED, ""
        creds = custody.client_credentials(app)
    sent = False
    for token, hint in custody.revocable_tokens(connection):
        try:
            sent |= oauth.revoke(
                provider,
                client_id=creds.client_id,
                client_secret=creds.client_secret,
                token=token,
                token_type_hint=hint,
            )
        except oauth.TokenEndpointError as exc:
            return RevocationResult.FAILED, str(exc)
    return (RevocationResult.REVOKED if sent else RevocationResult.UNSUPPORTED), ""


def _destroy(
    connection: Connection,
    organization: Organization,
    result: str,
    failure: str,
) -> Connection:
    custody.destroy_secrets(connection)
    # An old key held for its rotation check goes with the connection's other secrets.
    for retired in RetiredCredential.objects.filter(connection=connection).held():
        custody.purge_retired_key(retired)
        retired.purged_at = timezone.now()
        retired.save(update_fields=["secret", "purged_at", "updated_at"])
    connection.status = ConnectionStatus.REVOKED
    detail = "Disconnected." + (f" Revocation failed: {failure}" if failure else "")
    connection.status_detail = detail[:300]
    connection.revoked_at = timezone.now()
    connection.revocation_result = result
    connection.save()
    if result == RevocationResult.FAILED:
        audit_record(
            action="connection.revocation_failed",
            organization=organization,
            target=connection,
            outcome=Outcome.FAILURE,
            connection_id=connection.pk,
            provider=connection.provider_key,
            reason=failure[:1000],
        )
    audit_record(
        action="connection.disconnected",
        organization=organization,
        target=connection,
        connection_id=connection.pk,
        provider=connection.provider_key,
        metadata={"revocation": result or "none"},
    )
    return connection


def connection_disconnect(
    *,
    connection_id: int,
    organization: Organization,
) -> Connection:
    """Revoke at the provider where it can, then destroy the secrets.
    Metadata stays for the audit trail. A failed revocation is recorded and the
    secrets are destroyed anyway.

    The row stays locked from reading the tokens to destroying them, so a refresh
    cannot rotate a token between revocation and destruction."""
    queryset = Connection.objects.filter(organization=organization)
    with transaction.atomic():
        connection = queryset.select_for_update().get(pk=connection_id)
        if connection.status == ConnectionStatus.REVOKED:
            return connection
        result, failure = _revoke_at_provider(connection, organization)
        # An MCP server's sessions (and a stdio child) in every process end within
        # seconds: their reaper closes the sessions of connections no longer active
        # (apps.connections.gateway.client).
        return _destroy(connection, organization, result, failure)


def personal_connections_disconnect(*, user: Any, organization: Organization) -> list[Connection]:
    """A member's personal connections in `organization`, each disconnected (revoked at
    the provider where it can, secrets destroyed, `connection.disconnected` audited): the
    member left the organization or their account was disabled."""
    ids = list(
        Connection.objects.for_organization(organization)
        .personal_of(user)
        .exclude(status=ConnectionStatus.REVOKED)
        .values_list("pk", flat=True)
    )
    return [connection_disconnect(connection_id=pk, organization=organization) for pk in ids]


# --- Usage ------------------------------------------------------------------------------


def connection_mark_used(
    *, connection_id: int, last_used_at: datetime | None = None, now: datetime | None = None
) -> bool:
    """Record use for the inventory, at most once a minute per connection (one
    conditional UPDATE; no write at all on most broker calls). `last_used_at` is what
    the caller already read: a recently used connection costs no query."""
    now = now or timezone.now()
    if last_used_at is not None and last_used_at >= now - USED_THROTTLE:
        return False
    updated = (
        Connection.objects.filter(pk=connection_id)
        .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - USED_THROTTLE))
        .update(last_used_at=now)
    )
    return bool(updated)
