"""Refreshing OAuth tokens under a row lock; marking needs_reauth."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from apps.audit.models import Outcome
from apps.audit.services import audit_record
from apps.connections import custody, oauth
from apps.connections.models import (
    MCP_PROVIDER_KEY,
    Connection,
    ConnectionStatus,
    McpServer,
)
from apps.connections.services.common import INVALID_GRANT_ERRORS, _token_expiry, resolved_provider
from apps.core.tasks import enqueue_on_commit
from apps.organizations.models import Membership, OrgRole
from apps.providers.catalog import Provider

# --- Refresh ------------------------------------------------------------------------------


class RefreshTemporarilyFailed(Exception):
    """A transient refresh failure (network, 5xx, 429): retry with backoff."""


def _mark_needs_reauth(connection: Connection, reason: str) -> None:
    connection.status = ConnectionStatus.NEEDS_REAUTH
    connection.status_detail = reason[:300]
    connection.last_refresh_error = reason[:300]
    connection.save(update_fields=["status", "status_detail", "last_refresh_error", "updated_at"])
    audit_record(
        action="connection.needs_reauth",
        organization_id=connection.organization_id,
        target=connection,
        outcome=Outcome.FAILURE,
        connection_id=connection.pk,
        provider=connection.provider_key,
        reason=reason[:1000],
    )
    # robust: the admins' email is a side effect; a task queue that is down is logged,
    # never turned into an error for the call that found the connection dead.
    enqueue_on_commit("connections.notify_needs_reauth", connection.pk, robust=True)


@dataclass(frozen=True)
class _Plan:
    provider: Provider
    creds: custody.ClientCredentials = field(repr=False)
    refresh_token: str = field(repr=False)
    resource: str = ""  # RFC 8707, for an upstream MCP server's tokens


def _plan(connection: Connection, *, force: bool) -> _Plan | None:
    """Decide (on a freshly read row) whether to call the provider."""
    if connection.status != ConnectionStatus.ACTIVE or not connection.is_oauth():
        return None
    if not (force or connection.is_refresh_due()):
        return None
    if not connection.has_refresh_token:
        if connection.is_expired():
            _mark_needs_reauth(
                connection, "The access token expired and the provider issued no refresh token."
            )
        return None
    if connection.provider_key == MCP_PROVIDER_KEY:
        server = McpServer.objects.get(pk=connection.pk)
        return _Plan(
            provider=server.oauth_provider(),
            creds=custody.mcp_client_credentials(server),
            refresh_token=custody.refresh_token_of(connection),
            resource=server.oauth_resource,
        )
    app = connection.provider_app
    if app is None:
        _mark_needs_reauth(connection, "The OAuth app settings for this provider were removed.")
        return None
    provider = resolved_provider(
        connection.provider_key,
        organization=connection.organization,
        base_url_params=connection.base_url_params,
    )
    return _Plan(
        provider=provider,
        creds=custody.client_credentials(app),
        refresh_token=custody.refresh_token_of(connection),
    )


def _call(plan: _Plan) -> dict[str, Any] | oauth.TokenEndpointError:
    try:
        return oauth.refresh(
            plan.provider,
            client_id=plan.creds.client_id,
            client_secret=plan.creds.client_secret,
            refresh_token=plan.refresh_token,
            resource=plan.resource,
        )
    except oauth.TokenEndpointError as exc:
        return exc


def _apply(
    connection: Connection,
    plan: _Plan,
    result: dict[str, Any] | oauth.TokenEndpointError,
    *,
    force: bool,
) -> str | None:
    """Store the outcome on the (locked, re-read) row. Returns a transient error or None."""
    if isinstance(result, oauth.TokenEndpointError):
        if result.error in INVALID_GRANT_ERRORS:
            _mark_needs_reauth(
                connection,
                "The provider no longer accepts the refresh token (invalid_grant). Reconnect it.",
            )
            return None
        connection.refresh_failures += 1
        connection.last_refresh_error = str(result)[:300]
        connection.save(update_fields=["refresh_failures", "last_refresh_error", "updated_at"])
        audit_record(
            action="connection.refresh_failed",
            organization_id=connection.organization_id,
            target=connection,
            outcome=Outcome.ERROR,
            connection_id=connection.pk,
            provider=connection.provider_key,
            reason=str(result)[:1000],
            metadata={"transient": result.transient, "failures": connection.refresh_failures},
        )
        return str(result) if result.transient else None
    connection.access_token = str(result["access_token"])
    if result.get("refresh_token"):  # rotation; else keep the old one
        connection.refresh_token = str(result["refresh_token"])
    connection.token_type = str(result.get("token_type") or connection.token_type)[:40]
    connection.expires_at = _token_expiry(result)
    if result.get("scope"):
        connection.scopes = oauth.granted_scopes(plan.provider, result, connection.scopes)
    connection.last_refreshed_at = timezone.now()
    connection.refresh_failures = 0
    connection.last_refresh_error = ""
    connection.save()
    audit_record(
        action="connection.refreshed",
        organization_id=connection.organization_id,
        target=connection,
        connection_id=connection.pk,
        provider=connection.provider_key,
        metadata={"rotated": bool(result.get("refresh_token")), "forced": force},
    )
    return None


# Set for this transaction only: a web request's short lock_timeout (settings.py) must
# not fail the callers that queue behind one refresh while it talks to the provider.
# A timeout that is off (0, background processes) stays off.
_REFRESH_WAIT_SQL = (
    "SELECT set_config('lock_timeout', CASE current_setting('lock_timeout') WHEN '0' "
    "THEN '0' ELSE %s END, true), set_config('statement_timeout', "
    "CASE current_setting('statement_timeout') WHEN '0' THEN '0' ELSE %s END, true)"
)


def _wait_for_a_refresh() -> None:
    wait_ms = str(int((settings.GRANTRY_EGRESS_TIMEOUT + 10) * 1000))
    with db_connection.cursor() as cursor:
        cursor.execute(_REFRESH_WAIT_SQL, [wait_ms, wait_ms])


def connection_refresh(*, connection_id: int, force: bool = False) -> Connection:
    """Refresh one OAuth connection if (still) needed.

    Takes the row lock, re-reads the row and decides under the lock, so of many
    concurrent callers exactly one talks to the provider; the others wait and then
    see the new token. The commit releases the lock."""
    with transaction.atomic():
        _wait_for_a_refresh()
        connection = Connection.objects.select_for_update().get(pk=connection_id)
        plan = _plan(connection, force=force)
        transient = _apply(connection, plan, _call(plan), force=force) if plan else None
    if transient is not None:
        raise RefreshTemporarilyFailed(transient)
    return connection


def connection_ids_refresh_due() -> list[int]:
    return list(Connection.objects.refresh_due().values_list("pk", flat=True))


def org_admin_emails(organization_id: int) -> list[str]:
    return sorted(
        {
            m.user.email
            for m in Membership.objects.select_related("user").filter(
                organization_id=organization_id, role__in=[OrgRole.ADMIN, OrgRole.OWNER]
            )
            if m.user.email
        }
    )
