"""Writes for connections: provider apps, connect (OAuth and API key), refresh,
disconnect. Every security-relevant change writes its audit event in the same
transaction; emails go out from `on_commit`.

One import point for views, tasks, commands and the broker:
`from apps.connections.services import connection_refresh`."""

from apps.connections.services.common import (
    CredentialRejected,
    ProviderUnreachable,
    fetch_account_label,
    oauth_redirect_uri,
    resolved_provider,
)
from apps.connections.services.connect import (
    ConnectFailure,
    connection_create_api_key,
    connection_create_from_oauth,
    connection_oauth_complete,
    connection_oauth_start,
    connection_save_checked_api_key,
    oauth_states_purge,
    provider_app_save,
)
from apps.connections.services.lifecycle import (
    connection_disconnect,
    connection_mark_used,
    personal_connections_disconnect,
)
from apps.connections.services.refresh import (
    RefreshTemporarilyFailed,
    connection_ids_refresh_due,
    connection_refresh,
    org_admin_emails,
)
from apps.connections.services.rotation import (
    connection_replace_api_key,
    retired_key_confirm_dead,
    retired_key_is_dead,
)

__all__ = [
    "ConnectFailure",
    "CredentialRejected",
    "ProviderUnreachable",
    "RefreshTemporarilyFailed",
    "connection_create_api_key",
    "connection_create_from_oauth",
    "connection_disconnect",
    "connection_ids_refresh_due",
    "connection_mark_used",
    "connection_oauth_complete",
    "connection_oauth_start",
    "connection_refresh",
    "connection_replace_api_key",
    "connection_save_checked_api_key",
    "fetch_account_label",
    "oauth_redirect_uri",
    "oauth_states_purge",
    "org_admin_emails",
    "personal_connections_disconnect",
    "provider_app_save",
    "resolved_provider",
    "retired_key_confirm_dead",
    "retired_key_is_dead",
]
