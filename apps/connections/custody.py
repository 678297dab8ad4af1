"""The ONLY module that reads plaintext secrets.

Every read of `Connection.access_token/refresh_token/api_key`,
`ProviderApp.client_secret`, `OAuthState.code_verifier` and an MCP server's
`McpServer.env_secrets/oauth_client_secret` is in this file,
so a reviewer audits custody here. Nothing here logs a secret or puts one in
an exception message.

`applied_auth(connection, provider)` returns the headers/query parameters that
carry the connection's credential; `apps.connections.credentials.auth_for`, what the
broker calls before an upstream request, refreshes an expired access token first
(under a row lock, `services.connection_refresh`) and then asks it. `mcp_auth` is
its twin for an upstream MCP server (the headers of a remote one, the environment of
a stdio one), asked by `credentials.mcp_auth_for`. This module imports no service: it
is what the services read secrets through.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from apps.connections.models import (
    Connection,
    McpServer,
    OAuthState,
    ProviderApp,
    RetiredCredential,
)
from apps.providers.catalog import Placement, Provider

# Refresh a little before the real expiry so a token does not die in flight: this
# window, or half the token's lifetime when that is shorter (Connection.refresh_ahead_seconds).
EXPIRY_LEEWAY_SECONDS = 30


class NeedsReauth(Exception):
    """The connection cannot produce a credential until an admin reconnects it."""

    def __init__(self, connection: Connection, reason: str = "") -> None:
        super().__init__(
            reason or f"Connection '{connection.name}' needs to be reconnected by an admin."
        )
        self.connection_id = connection.pk
        self.status = connection.status


@dataclass(frozen=True)
class AppliedAuth:
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    params: dict[str, str] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"<AppliedAuth headers={sorted(self.headers)} params={sorted(self.params)}>"


def secrets_not_needed(auth_type: str) -> frozenset[str]:
    """The encrypted fields `auth_for` does not read for this kind of connection. The
    broker leaves them encrypted and deferred (Django loads one on first access if
    anything ever asks), so a call decrypts one secret instead of three. A refresh
    reloads the row under its lock and hands back every field it changes."""
    if auth_type == "oauth2":
        return frozenset({"refresh_token", "api_key"})
    if auth_type in ("env", "none"):  # MCP: a stdio server's secrets, or none
        return frozenset({"access_token", "refresh_token", "api_key"})
    return frozenset({"access_token", "refresh_token"})


def _credential(connection: Connection) -> str:
    return connection.access_token if connection.is_oauth() else connection.api_key


def adopt_refreshed(connection: Connection, fresh: Connection) -> None:
    """Hand the caller's object a refreshed connection's new state too (it may be
    reused): `credentials.auth_for` after `services.connection_refresh`."""
    for name in (
        "access_token",
        "refresh_token",
        "expires_at",
        "status",
        "last_refreshed_at",
        "has_refresh_token",
    ):
        setattr(connection, name, getattr(fresh, name))


def applied_auth(connection: Connection, provider: Provider) -> AppliedAuth:
    """The placement of the connection's current credential (no refresh: that is
    `credentials.auth_for`, what the broker calls)."""
    secret = _credential(connection)
    if not secret:
        raise NeedsReauth(connection, "The connection holds no credential.")
    return place_credential(provider, secret, connection.base_url_params)


def place_credential(
    provider: Provider, secret: str, base_url_params: dict[str, Any] | None = None
) -> AppliedAuth:
    placement = Placement(provider.placement)
    if placement == Placement.BEARER:
        return AppliedAuth(headers={"Authorization": f"Bearer {secret}"})
    if placement == Placement.HEADER:
        return AppliedAuth(headers={provider.header_name: f"{provider.header_prefix}{secret}"})
    if placement == Placement.BASIC:
        # "user:secret" when the connection names a user (Zendesk "email/token"); a
        # secret that holds a colon is already such a pair (Twilio's "SID:token": a user
        # id cannot contain one, RFC 7617 §2); else the secret is the user name with an
        # empty password (Stripe).
        user = str((base_url_params or {}).get("basic_username", ""))
        pair = f"{user}:{secret}" if user else secret if ":" in secret else f"{secret}:"
        encoded = base64.b64encode(pair.encode()).decode()
        return AppliedAuth(headers={"Authorization": f"Basic {encoded}"})
    if placement == Placement.QUERY:
        return AppliedAuth(params={provider.header_name: secret})
    raise ValueError(f"Unknown credential placement {placement!r}.")


@dataclass(frozen=True)
class McpAuth:
    """What carries an MCP connection's credential: HTTP headers of a remote server,
    or the environment variables of a stdio one. `fingerprint` changes whenever the
    credential does (a refresh, a new key), so an upstream session opened with the
    old one is never reused; it is a digest, never the secret."""

    headers: dict[str, str] = field(default_factory=dict, repr=False)
    env: dict[str, str] = field(default_factory=dict, repr=False)
    fingerprint: str = field(default="", repr=False)

    def __repr__(self) -> str:
        return f"<McpAuth headers={sorted(self.headers)} env={sorted(self.env)}>"


# Keyed per process: a fingerprint only has to tell this process's credentials apart,
# and says nothing about a secret to anyone who sees it.
_FINGERPRINT_KEY = secrets.token_bytes(32)


def _fingerprint(*values: str) -> str:
    message = "\x00".join(values).encode()
    return hmac.new(_FINGERPRINT_KEY, message, hashlib.sha256).hexdigest()[:32]


def mcp_auth(connection: Connection, server: McpServer) -> McpAuth:
    """The connection's current credential as an upstream MCP exchange carries it (no
    refresh: that is `credentials.mcp_auth_for`, what the gateway calls)."""
    if connection.auth_type == "none":
        return McpAuth(fingerprint=_fingerprint(""))
    if connection.auth_type == "env":
        env = mcp_env_secrets(server)
        return McpAuth(
            env=env, fingerprint=_fingerprint(*sorted(f"{k}={v}" for k, v in env.items()))
        )
    secret = _credential(connection)
    if not secret:
        raise NeedsReauth(connection, "The connection holds no credential.")
    if connection.is_oauth():
        headers = {"Authorization": f"Bearer {secret}"}
    else:
        headers = {server.header_name or "Authorization": f"{server.header_prefix}{secret}"}
    return McpAuth(headers=headers, fingerprint=_fingerprint(secret))


def mcp_env_secrets(server: McpServer) -> dict[str, str]:
    try:
        value = json.loads(server.env_secrets or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def mcp_client_credentials(server: McpServer) -> ClientCredentials:
    """The OAuth client Grantry registered at an MCP server's authorization server."""
    return ClientCredentials(
        client_id=server.oauth_client_id, client_secret=server.oauth_client_secret
    )


# --- reads used by the services (refresh, revoke, connect) -------------------------


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str = field(repr=False)


def client_credentials(app: ProviderApp) -> ClientCredentials:
    return ClientCredentials(client_id=app.client_id, client_secret=app.client_secret)


def refresh_token_of(connection: Connection) -> str:
    return connection.refresh_token


def revocable_tokens(connection: Connection) -> list[tuple[str, str]]:
    """(token, token_type_hint) pairs to revoke: refresh token first (revoking it
    revokes the grant at most servers), then the access token."""
    pairs = []
    if connection.refresh_token:
        pairs.append((connection.refresh_token, "refresh_token"))
    if connection.access_token:
        pairs.append((connection.access_token, "access_token"))
    return pairs


def code_verifier_of(state: OAuthState) -> str:
    return state.code_verifier


def retire_api_key(connection: Connection) -> RetiredCredential:
    """The connection's current API key as a `RetiredCredential` (unsaved; the caller saves it
    in the transaction that gives the connection its new key)."""
    return RetiredCredential(
        organization_id=connection.organization_id,
        connection=connection,
        provider_key=connection.provider_key,
        base_url_params=dict(connection.base_url_params),
        secret=connection.api_key,
    )


def retired_key_auth(retired: RetiredCredential, provider: Provider) -> AppliedAuth:
    """The old key placed as the provider expects it, for the check that it is dead."""
    return place_credential(provider, retired.secret, retired.base_url_params)


def api_key_is(connection: Connection, secret: str) -> bool:
    """Whether the connection's key is `secret` (constant-time), without handing it out."""
    return hmac.compare_digest(connection.api_key.encode(), secret.encode())


def purge_retired_key(retired: RetiredCredential) -> None:
    """Blank the held secret (the caller saves)."""
    retired.secret = ""


def destroy_secrets(connection: Connection) -> None:
    """Blank every secret of the connection (the caller saves; an MCP server's own
    row is saved here)."""
    connection.access_token = ""
    connection.refresh_token = ""
    connection.api_key = ""
    connection.has_refresh_token = False
    server = McpServer.objects.filter(connection_id=connection.pk).first()
    if server is not None:
        server.env_secrets = ""
        server.oauth_client_secret = ""
        server.save(update_fields=["env_secrets", "oauth_client_secret"])
