"""Thin Celery tasks: take ids, call one service, safe to run twice."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from apps.connections.models import Connection, ConnectionStatus
from apps.connections.services import (
    RefreshTemporarilyFailed,
    connection_ids_refresh_due,
    connection_refresh,
    org_admin_emails,
)


@shared_task(
    name="connections.refresh_connection",
    autoretry_for=(RefreshTemporarilyFailed,),
    retry_backoff=15,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=6,
    time_limit=90,
    soft_time_limit=75,
    acks_late=True,
)
def refresh_connection(connection_id: int) -> None:
    # The service re-checks under the row lock, so a duplicate run is a no-op.
    connection_refresh(connection_id=connection_id)


@shared_task(name="connections.refresh_due_connections", time_limit=60, soft_time_limit=50)
def refresh_due_connections() -> int:
    """Periodic (beat): enqueue a refresh for every connection expiring soon or
    whose refresh token has been idle too long (keeps it alive)."""
    ids = connection_ids_refresh_due()
    for connection_id in ids:
        refresh_connection.delay(connection_id)
    return len(ids)


@shared_task(
    name="connections.notify_needs_reauth",
    time_limit=60,
    soft_time_limit=50,
    autoretry_for=(OSError,),
    retry_backoff=30,
    max_retries=5,
)
def notify_needs_reauth(connection_id: int) -> int:
    """Email the org's admins that a connection needs to be reconnected."""
    connection = (
        Connection.objects.select_related("organization")
        .filter(pk=connection_id, status=ConnectionStatus.NEEDS_REAUTH)
        .first()
    )
    if connection is None:  # already reconnected or disconnected
        return 0
    recipients = org_admin_emails(connection.organization_id)
    if not recipients:
        return 0
    org = connection.organization
    url = settings.GRANTRY_BASE_URL + reverse("connections:list", kwargs={"org_slug": org.slug})
    send_mail(
        subject=f"[Grantry] Reconnect '{connection.name}' in {org.name}",
        message=(
            f"The connection '{connection.name}' ({connection.provider_key}) in {org.name} "
            f"can no longer refresh its access: {connection.status_detail}\n\n"
            f"Workers using it get an error until an admin reconnects it. Open {url} and "
            f"click Reconnect next to '{connection.name}'.\n"
        ),
        from_email=None,
        recipient_list=recipients,
    )
    return len(recipients)


@shared_task(name="connections.purge_oauth_states", time_limit=60, soft_time_limit=50)
def purge_oauth_states() -> int:
    """Periodic (beat): drop connect attempts that expired or were used over a day ago."""
    from apps.connections.services import oauth_states_purge

    return oauth_states_purge()


@shared_task(name="connections.refresh_mcp_tools", time_limit=60, soft_time_limit=50)
def refresh_mcp_tools() -> int:
    """Periodic (beat): one tool refresh per active MCP connection."""
    from apps.connections.models import MCP_PROVIDER_KEY

    ids = list(
        Connection.objects.usable()
        .filter(provider_key=MCP_PROVIDER_KEY, mcp_server__isnull=False)
        .values_list("pk", flat=True)
    )
    for connection_id in ids:
        refresh_mcp_connection_tools.delay(connection_id)
    return len(ids)


@shared_task(
    name="connections.refresh_mcp_connection_tools",
    time_limit=120,
    soft_time_limit=100,
    acks_late=True,
)
def refresh_mcp_connection_tools(connection_id: int) -> str:
    """List one MCP server's tools and sync the pinned rows (safe to run twice: a sync
    of an unchanged list changes nothing). A failure is kept as the server's health."""
    from apps.connections.custody import NeedsReauth
    from apps.connections.gateway.tools import GatewayProblem, mcp_tools_refresh

    if not Connection.objects.usable().filter(pk=connection_id).exists():
        return "skipped"
    try:
        report = mcp_tools_refresh(connection_id=connection_id)
    except (GatewayProblem, NeedsReauth) as exc:
        return f"failed: {exc}"[:200]
    return f"{report.total} tools, {len(report.changed)} changed"
