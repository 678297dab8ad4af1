"""The credential of one upstream request: `auth_for(connection, provider)`, what the
broker calls, and `mcp_auth_for(connection, server)`, what the MCP gateway calls.

An expired OAuth access token is refreshed first (under a row lock, so concurrent
callers cause one token request: `services.connection_refresh`); then custody, the
one reader of plaintext secrets, places the credential. This module sits above both,
so custody imports no service and the services read secrets only through custody.
"""

from __future__ import annotations

from apps.connections import custody
from apps.connections.custody import EXPIRY_LEEWAY_SECONDS, AppliedAuth, McpAuth, NeedsReauth
from apps.connections.models import Connection, ConnectionStatus, McpServer
from apps.connections.services import connection_refresh
from apps.providers.catalog import Provider


def _usable(connection: Connection) -> None:
    """Active, and an OAuth access token refreshed if it expires (NeedsReauth if not)."""
    if connection.status != ConnectionStatus.ACTIVE:
        raise NeedsReauth(connection)
    if connection.is_oauth() and connection.is_expired(
        leeway=connection.refresh_ahead_seconds(EXPIRY_LEEWAY_SECONDS)
    ):
        fresh = connection_refresh(connection_id=connection.pk)
        custody.adopt_refreshed(connection, fresh)
        if fresh.status != ConnectionStatus.ACTIVE or fresh.is_expired():
            raise NeedsReauth(fresh)


def auth_for(connection: Connection, provider: Provider) -> AppliedAuth:
    """The credential placement for one upstream request. May refresh first."""
    _usable(connection)
    return custody.applied_auth(connection, provider)


def mcp_auth_for(connection: Connection, server: McpServer) -> McpAuth:
    """The credential of one upstream MCP exchange (headers, or a stdio server's
    environment). May refresh an OAuth token first."""
    _usable(connection)
    return custody.mcp_auth(connection, server)
