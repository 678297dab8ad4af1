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
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection as db_connection

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


# --- the hot path's credential cache ------------------------------------------------
#
# The broker's connection lookup (selectors.connections_for_call) hands custody the one
# secret a call uses still sealed (`sealed_credential`: the ciphertext as stored). Opening
# it costs a Fernet decryption (HMAC + AES) per call, so each process keeps what it opened
# last per connection, keyed by the sealed value itself: the ciphertext is the
# credential's version. Every change of a secret writes a new one (a rotated or imported
# key, a refresh, a disconnect that blanks it, `rotate_encryption_key`'s rewrite: Fernet
# draws a fresh IV each time), and the sealed value is read from the row on every call,
# so an entry opened before a change can never match after it commits, in this process
# or any other; nothing has to be told to forget. An entry also expires after
# GRANTRY_CREDENTIAL_CACHE_SECONDS (0: no cache), which bounds how long an unused
# plaintext stays in the process's memory (docs/architecture.md, "Custody and egress").

# connection id -> (sealed value, plaintext, monotonic expiry); per process, shared by
# threads (one dict assignment per entry; a race only costs another decryption).
_opened: dict[int, tuple[bytes, str, float]] = {}
_opened_lock = threading.Lock()
_next_sweep = 0.0
OPENED_MAX = 1024


def _open_sealed(connection: Connection, sealed: bytes) -> str:
    global _next_sweep
    if not sealed:
        return ""
    now = time.monotonic()
    entry = _opened.get(connection.pk)
    if entry is not None and entry[0] == sealed and entry[2] > now:
        return entry[1]
    field: Any = Connection._meta.get_field("access_token" if connection.is_oauth() else "api_key")
    secret = str(field.from_db_value(sealed, None, db_connection) or "")
    lifetime = float(getattr(settings, "GRANTRY_CREDENTIAL_CACHE_SECONDS", 0))
    with _opened_lock:
        if now >= _next_sweep:  # expired entries go, at most once per lifetime
            for key in [k for k, v in _opened.items() if v[2] <= now]:
                del _opened[key]
            _next_sweep = now + lifetime
        if lifetime > 0:
            if len(_opened) >= OPENED_MAX:
                _opened.clear()
            _opened[connection.pk] = (sealed, secret, now + lifetime)
        else:
            _opened.pop(connection.pk, None)
    return secret


def forget_opened() -> None:
    """Empty this process's cache of opened credentials (tests)."""
    with _opened_lock:
        _opened.clear()


def _credential(connection: Connection) -> str:
    sealed = connection.__dict__.get("sealed_credential")
    if sealed is not None:  # loaded by the broker's lookup: opened here, maybe cached
        return _open_sealed(connection, sealed)
    return connection.access_token if connection.is_oauth() else connection.api_key


def adopt_refreshed(connection: Connection, fresh: Connection) -> None:
    """Hand the caller's object a refreshed connection's new state too (it may be
    reused): `credentials.auth_for` after `services.connection_refresh`. The refreshed
    secret is the one to use from now on, not the sealed value the lookup read."""
    connection.__dict__.pop("sealed_credential", None)
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
