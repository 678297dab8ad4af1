"""Connecting: provider apps, the OAuth connect flow, API-key connections."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.models import Outcome
from apps.audit.services import audit_record
from apps.connections import custody, oauth
from apps.connections.models import (
    MCP_PROVIDER_KEY,
    Connection,
    ConnectionStatus,
    McpServer,
    OAuthState,
    ProviderApp,
    RevocationResult,
)
from apps.connections.services.common import (
    CredentialRejected,
    ProviderUnreachable,
    _token_expiry,
    fetch_account_label,
    oauth_redirect_uri,
    resolved_provider,
)
from apps.organizations.models import Organization
from apps.organizations.tenancy import resolve_membership
from apps.providers.catalog import AuthType

# --- Provider apps ----------------------------------------------------------------


@transaction.atomic
def provider_app_save(
    *,
    organization: Organization,
    provider_key: str,
    client_id: str,
    client_secret: str | None,
    actor: Any = None,
) -> ProviderApp:
    """Create or update the org's OAuth client for a provider. An empty
    `client_secret` keeps the stored one (the form never shows it back)."""
    app = (
        ProviderApp.objects.select_for_update()
        .filter(organization=organization, provider_key=provider_key)
        .first()
    )
    created = app is None
    if app is None:
        app = ProviderApp(
            organization=organization,
            provider_key=provider_key,
            created_by=actor if getattr(actor, "pk", None) else None,
        )
    secret_changed = bool(client_secret)
    app.client_id = client_id.strip()
    if client_secret:
        app.client_secret = client_secret.strip()
    app.save()
    audit_record(
        action="provider_app.created" if created else "provider_app.updated",
        organization=organization,
        target=app,
        provider=provider_key,
        metadata={"client_id": app.client_id, "secret_changed": secret_changed},
    )
    return app


# --- Connect: OAuth ---------------------------------------------------------------------


class ConnectFailure(Exception):
    """A connect attempt that ended on an error page. `code` picks the page:
    consent_denied, provider_error, state_invalid, state_reused, state_expired,
    token_exchange_failed, issuer_mismatch, name_taken, forbidden."""

    def __init__(self, code: str, detail: str = "", *, organization_slug: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
        self.organization_slug = organization_slug


@transaction.atomic
def connection_oauth_start(
    *,
    organization: Organization,
    provider_key: str,
    name: str,
    actor: Any,
    session_key: str | None,
    reconnect: Connection | None = None,
    scopes: list[str] | None = None,
    base_url_params: dict[str, str] | None = None,
    personal: bool = False,
) -> str:
    """Record a single-use state (with the PKCE verifier, server-side) and return
    the provider's authorization URL to redirect the browser to. Raises
    BaseURLParamError if the provider needs URL parameters that are missing.

    The state is bound to `user` and, when given, to the browser session
    `session_key`. `session_key=None` is for a start from the management API with
    a personal token (no browser session exists yet): the callback then accepts
    any browser session of the same user, so the person opens the URL in a
    browser where they are signed in to Grantry.

    `personal`: the member connects their own account; the connection will be theirs
    (`Connection.owner`). A personal connection is reconnected only by its owner."""
    if reconnect is not None:
        personal = reconnect.owner_id is not None
        if personal and reconnect.owner_id != getattr(actor, "pk", None):
            raise PermissionError("Only its owner can reconnect a personal connection.")
    params = dict(reconnect.base_url_params if reconnect else (base_url_params or {}))
    provider = resolved_provider(provider_key, organization=organization, base_url_params=params)
    app = ProviderApp.objects.for_organization(organization).get(provider_key=provider_key)
    state = secrets.token_urlsafe(32)
    verifier = oauth.new_code_verifier()
    requested = list(scopes if scopes is not None else provider.default_scopes)
    OAuthState.objects.create(
        state_digest=OAuthState.digest(state),
        session_digest=OAuthState.digest(session_key) if session_key is not None else "",
        user=actor,
        organization=organization,
        provider_key=provider_key,
        connection_name=reconnect.name if reconnect else name,
        reconnect=reconnect,
        personal=personal,
        redirect_uri=oauth_redirect_uri(),
        requested_scopes=requested,
        base_url_params=params,
        code_verifier=verifier,
    )
    return oauth.authorization_url(
        provider,
        client_id=app.client_id,
        redirect_uri=oauth_redirect_uri(),
        state=state,
        code_verifier=verifier,
        scopes=requested,
    )


def _consume_state(*, state: str, user: Any, session_key: str) -> OAuthState:
    digest = OAuthState.digest(state or "")
    row = OAuthState.objects.select_related("organization").filter(state_digest=digest).first()
    if not state or row is None:
        raise ConnectFailure("state_invalid")
    slug = row.organization.slug
    # An empty session digest: started from the API, bound to the user only.
    session_matches = not row.session_digest or row.session_digest == OAuthState.digest(
        session_key or ""
    )
    if row.user_id != getattr(user, "pk", None) or not session_matches:
        raise ConnectFailure("state_invalid", organization_slug=slug)
    # Single use, race-safe: only one request can flip used_at.
    consumed = OAuthState.objects.unused().filter(pk=row.pk).update(used_at=timezone.now())
    if not consumed:
        raise ConnectFailure("state_reused", organization_slug=slug)
    if row.is_expired():
        raise ConnectFailure("state_expired", organization_slug=slug)
    return row


def _audit_connect_failure(row: OAuthState, code: str, detail: str) -> None:
    audit_record(
        action="connection.connect_failed",
        organization=row.organization,
        outcome=Outcome.FAILURE,
        provider=row.provider_key,
        reason=f"{code}: {detail}"[:1000],
        metadata=row.as_audit_metadata(),
    )


def connection_oauth_complete(
    *,
    params: dict[str, str],
    actor: Any,
    session_key: str,
) -> Connection:
    """Handle the provider's redirect back to /oauth/callback/. Raises ConnectFailure."""

    row = _consume_state(state=params.get("state", ""), user=actor, session_key=session_key)
    slug = row.organization.slug

    def fail(code: str, detail: str = "") -> ConnectFailure:
        _audit_connect_failure(row, code, detail)
        return ConnectFailure(code, detail[:300], organization_slug=slug)

    try:
        membership = resolve_membership(actor, slug)
    except Exception:
        raise fail("forbidden", "You are no longer a member of this organization.") from None
    if row.personal:
        # A member's own account: any member, for themselves only (the state is bound to
        # them); a reconnect only of their own connection.
        if row.reconnect is not None and row.reconnect.owner_id != actor.pk:
            raise fail("forbidden", "Only its owner can reconnect a personal connection.")
    elif not membership.can_manage():
        raise fail("forbidden", "Only admins can connect accounts.")
    error = params.get("error", "")
    if error == "access_denied":
        raise fail("consent_denied", params.get("error_description", ""))
    if error:
        raise fail("provider_error", f"{error}: {params.get('error_description', '')}")
    if row.provider_key == MCP_PROVIDER_KEY:
        return _mcp_oauth_complete(row, params, actor, fail)
    return _provider_oauth_complete(row, params, actor, fail)


def _provider_oauth_complete(
    row: OAuthState, params: dict[str, str], actor: Any, fail: Any
) -> Connection:
    """The callback of a catalog provider's authorization server: the RFC 9207 issuer, the
    code exchanged with the organization's OAuth app, the account's name, the connection."""
    provider = resolved_provider(
        row.provider_key,
        organization=row.organization,
        base_url_params=row.base_url_params,
    )
    iss = params.get("iss", "")
    if iss and not oauth.expected_issuer_matches(provider, iss):
        raise fail("issuer_mismatch", "The answer came from a different authorization server.")
    code = params.get("code", "")
    if not code:
        raise fail("provider_error", "The provider sent no authorization code.")
    app = (
        ProviderApp.objects.for_organization(row.organization)
        .filter(provider_key=row.provider_key)
        .first()
    )
    if app is None:
        raise fail("token_exchange_failed", "The OAuth app settings were removed meanwhile.")
    creds = custody.client_credentials(app)
    try:
        token = oauth.exchange_code(
            provider,
            client_id=creds.client_id,
            client_secret=creds.client_secret,
            redirect_uri=row.redirect_uri,
            code=code,
            code_verifier=custody.code_verifier_of(row),
        )
    except oauth.TokenEndpointError as exc:
        raise fail("token_exchange_failed", str(exc)) from exc
    if not token.get("access_token"):
        raise fail("token_exchange_failed", "The token endpoint returned no access token.")
    account_label, identity_note = "", ""
    try:
        account_label = fetch_account_label(
            provider,
            str(token["access_token"]),
            row.base_url_params,
        )
    except (CredentialRejected, ProviderUnreachable) as exc:
        identity_note = f"Identity not fetched: {exc}"
    try:
        return connection_create_from_oauth(
            organization=row.organization,
            provider_key=row.provider_key,
            name=row.connection_name,
            token=token,
            provider_app=app,
            scopes=oauth.granted_scopes(provider, token, row.requested_scopes),
            account_label=account_label,
            status_detail=identity_note,
            actor=actor,
            reconnect=row.reconnect,
            base_url_params=row.base_url_params,
            owner=actor if row.personal else None,
        )
    except IntegrityError:
        raise fail(
            "name_taken", f"A connection named '{row.connection_name}' already exists."
        ) from None


def _mcp_oauth_complete(
    row: OAuthState, params: dict[str, str], actor: Any, fail: Any
) -> Connection:
    """The callback of an upstream MCP server's authorization server (gateway.oauth):
    the client Grantry registered there, the RFC 9207 issuer it discovered, and the
    RFC 8707 resource on the code exchange."""
    server = McpServer.objects.filter(pk=row.reconnect_id).first()
    if server is None:
        raise fail("token_exchange_failed", "The MCP connection was removed meanwhile.")
    problem = server.issuer_problem(params.get("iss", ""))
    if problem:
        raise fail("issuer_mismatch", problem)
    code = params.get("code", "")
    if not code:
        raise fail("provider_error", "The server sent no authorization code.")
    creds = custody.mcp_client_credentials(server)
    provider = server.oauth_provider()
    try:
        token = oauth.exchange_code(
            provider,
            client_id=creds.client_id,
            client_secret=creds.client_secret,
            redirect_uri=row.redirect_uri,
            code=code,
            code_verifier=custody.code_verifier_of(row),
            resource=server.oauth_resource,
        )
    except oauth.TokenEndpointError as exc:
        raise fail("token_exchange_failed", str(exc)) from exc
    if not token.get("access_token"):
        raise fail("token_exchange_failed", "The token endpoint returned no access token.")
    return connection_create_from_oauth(
        organization=row.organization,
        provider_key=MCP_PROVIDER_KEY,
        name=row.connection_name,
        token=token,
        provider_app=None,
        scopes=oauth.granted_scopes(provider, token, row.requested_scopes),
        account_label=server.oauth_issuer[:200],
        actor=actor,
        reconnect=row.reconnect,
    )


@transaction.atomic
def connection_create_from_oauth(
    *,
    organization: Organization,
    provider_key: str,
    name: str,
    token: dict[str, Any],
    provider_app: ProviderApp | None,
    scopes: list[str],
    account_label: str = "",
    status_detail: str = "",
    actor: Any = None,
    reconnect: Connection | None = None,
    base_url_params: dict[str, Any] | None = None,
    owner: Any = None,
) -> Connection:
    """Store a freshly granted token as a new connection, or into `reconnect`.
    `owner`: a member's personal connection (their own account)."""
    if reconnect is not None:
        connection = Connection.objects.select_for_update().get(
            pk=reconnect.pk, organization=organization
        )
        if connection.owner_id != getattr(owner, "pk", None):
            # A shared connection never becomes someone's, nor a personal one another's.
            raise PermissionError("A reconnect keeps the connection's owner.")
    else:
        connection = Connection(
            organization=organization,
            provider_key=provider_key,
            name=name,
            auth_type=AuthType.OAUTH2,
            created_by=actor,
            owner=owner,
        )
    if reconnect is None and base_url_params:
        connection.base_url_params = dict(base_url_params)
    connection.provider_app = provider_app
    connection.access_token = str(token["access_token"])
    connection.refresh_token = str(token.get("refresh_token") or "")
    connection.has_refresh_token = bool(connection.refresh_token)
    connection.token_type = str(token.get("token_type") or "")[:40]
    connection.expires_at = _token_expiry(token)
    connection.scopes = scopes
    connection.account_label = account_label or connection.account_label
    connection.status = ConnectionStatus.ACTIVE
    connection.status_detail = status_detail[:300]
    connection.last_refreshed_at = timezone.now()
    connection.refresh_failures = 0
    connection.last_refresh_error = ""
    connection.revoked_at = None
    connection.revocation_result = RevocationResult.NONE
    with transaction.atomic():  # savepoint: a duplicate name must not poison the outer tx
        connection.save()
    audit_record(
        action="connection.reconnected" if reconnect else "connection.created",
        organization=organization,
        target=connection,
        connection_id=connection.pk,
        provider=provider_key,
        metadata={
            "auth_type": "oauth2",
            "scopes": scopes,
            "account": connection.account_label,
            **({"personal_of": owner.get_username()} if owner is not None else {}),
        },
    )
    return connection


# --- Connect: API key -----------------------------------------------------------------


def connection_create_api_key(
    *,
    organization: Organization,
    provider_key: str,
    name: str,
    api_key: str,
    base_url_params: dict[str, Any] | None = None,
    actor: Any = None,
) -> Connection:
    """Check the key with the provider's identity call, then save. A rejected key
    raises CredentialRejected and nothing is written."""
    params = dict(base_url_params or {})
    provider = resolved_provider(provider_key, organization=organization, base_url_params=params)
    api_key = api_key.strip()
    account_label = fetch_account_label(provider, api_key, params)
    return connection_save_checked_api_key(
        organization=organization,
        provider_key=provider_key,
        name=name,
        api_key=api_key,
        base_url_params=params,
        account_label=account_label,
        created_by=actor,
    )


@transaction.atomic
def connection_save_checked_api_key(
    *,
    organization: Organization,
    provider_key: str,
    name: str,
    api_key: str,
    base_url_params: dict[str, Any],
    account_label: str,
    created_by: Any,
) -> Connection:
    """Save an API-key connection whose key the provider has just accepted
    (`fetch_account_label`); a caller that must write more in the same transaction
    (the import of a key from an agent's config) makes the check first, then calls this."""
    connection = Connection(
        organization=organization,
        provider_key=provider_key,
        name=name,
        auth_type=AuthType.API_KEY,
        api_key=api_key,
        base_url_params=base_url_params,
        account_label=account_label,
        created_by=created_by,
    )
    connection.save()
    audit_record(
        action="connection.created",
        organization=organization,
        target=connection,
        connection_id=connection.pk,
        provider=provider_key,
        metadata={"auth_type": "api_key", "account": account_label},
    )
    return connection


def oauth_states_purge(*, older_than: timedelta = timedelta(days=1)) -> int:
    """Delete connect attempts (and their PKCE verifiers) that can no longer be used."""
    cutoff = timezone.now() - older_than
    deleted, _ = OAuthState.objects.filter(expires_at__lt=cutoff).delete()
    return deleted
