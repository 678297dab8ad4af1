"""Grantry as the OAuth client of an upstream MCP server (the MCP authorization spec).

1. **Probe.** Grantry calls the server without a credential; it answers 401 with
   `WWW-Authenticate: Bearer resource_metadata="…"` (and maybe a `scope`).
2. **Protected resource metadata** (RFC 9728), from that URL or the well-known
   fallbacks (`mcp.client.auth.utils` builds the list): the resource it names must
   be this server (`check_resource_allowed`), and it names the authorization server.
3. **Authorization server metadata** (RFC 8414, with the OpenID fallbacks); its
   `issuer` must be the one discovery started from.
4. **Registration.** Where the server supports client ID metadata documents,
   Grantry's client id is the URL of the document it publishes for itself
   (`client_metadata_document`, https only); otherwise RFC 7591 dynamic
   registration, as a confidential client when the server allows one.
5. **Consent** in the admin's browser, like every OAuth connect: a single-use
   `OAuthState` row (bound to the session and the user, PKCE S256 verifier kept
   server-side), the authorization request with the RFC 8707 `resource`; the
   answer comes back to Grantry's one callback, where `iss` (RFC 9207) must be the
   discovered issuer — required when the server says it sends one.
6. **Tokens** in custody like any connection's; the code exchange and every
   refresh carry `resource` too. Refresh runs where every refresh runs
   (`connection_refresh`: the row lock, so many callers cause one token request).

Every request goes through `apps.core.egress` (the SSRF guard, the size cap); the
protocol pieces are authlib's (`apps.connections.oauth`) and the `mcp` SDK's models
and discovery helpers. Nothing here reads a stored secret: that is custody's.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx2
from django.conf import settings
from django.db import IntegrityError, transaction
from mcp.client.auth.utils import (
    build_oauth_authorization_server_metadata_discovery_urls,
    build_protected_resource_metadata_discovery_urls,
    extract_field_from_www_auth,
    is_valid_client_metadata_url,
    issuers_match,
)
from mcp.shared.auth import OAuthMetadata, ProtectedResourceMetadata
from mcp.shared.auth_utils import check_resource_allowed, resource_url_from_server_url
from pydantic import ValidationError

from apps.audit.services import audit_record
from apps.connections import oauth
from apps.connections.gateway import client
from apps.connections.gateway.client import Upstream, UpstreamError
from apps.connections.gateway.tools import GatewayProblem
from apps.connections.mcp_models import MCP_PROVIDER_KEY, McpAuth, McpServer, McpTransport
from apps.connections.models import Connection, ConnectionStatus, OAuthState
from apps.connections.services.common import oauth_redirect_uri
from apps.core.egress import EgressError, egress_request
from apps.organizations.models import Organization

MCP_PROTOCOL_HEADER = {"MCP-Protocol-Version": "2025-11-25", "Accept": "application/json"}
METADATA_MAX_BYTES = 256_000


def client_metadata_url() -> str:
    """The client id Grantry uses where servers accept client ID metadata documents."""
    return f"{settings.GRANTRY_BASE_URL}/oauth/mcp-client.json"


def client_metadata_document() -> dict[str, Any]:
    """Grantry's own client metadata document (served at `client_metadata_url()`)."""
    return {
        "client_id": client_metadata_url(),
        "client_name": "Grantry",
        "client_uri": settings.GRANTRY_BASE_URL,
        "redirect_uris": [oauth_redirect_uri()],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }


@dataclass
class Discovered:
    resource: str
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str = ""
    registration_endpoint: str = ""
    scopes: list[str] = field(default_factory=list)
    iss_required: bool = False
    cimd_supported: bool = False
    auth_methods: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Registration:
    client_id: str
    client_secret: str = field(default="", repr=False)
    auth_method: str = "none"
    kind: str = "dcr"  # or "cimd"


def _get_json(url: str) -> dict[str, Any] | None:
    """A metadata document, or None when this URL does not serve one (try the next)."""
    try:
        response = egress_request(
            "GET", url, headers=MCP_PROTOCOL_HEADER, max_bytes=METADATA_MAX_BYTES
        )
    except EgressError as exc:
        raise GatewayProblem(
            "discovery_failed", f"Grantry could not read the server's OAuth metadata: {exc}"
        ) from None
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


M = TypeVar("M", ProtectedResourceMetadata, OAuthMetadata)


def _first_document(urls: list[str], model: type[M]) -> M | None:
    """The first of `urls` that serves a valid document of `model` (the spec's fallbacks)."""
    for candidate in urls:
        body = _get_json(candidate)
        if body is None:
            continue
        try:
            return model.model_validate(body)
        except ValidationError:
            continue
    return None


def discover(url: str, www_authenticate: str) -> Discovered:
    """RFC 9728 then RFC 8414 discovery for the MCP server at `url`."""
    challenge = httpx2.Response(401, headers={"WWW-Authenticate": www_authenticate})
    metadata_url = extract_field_from_www_auth(challenge, "resource_metadata")
    scope = extract_field_from_www_auth(challenge, "scope")
    resource_metadata = _first_document(
        build_protected_resource_metadata_discovery_urls(metadata_url, url),
        ProtectedResourceMetadata,
    )
    if resource_metadata is None:
        raise GatewayProblem(
            "discovery_failed",
            "The server asked for OAuth but publishes no protected resource metadata (RFC 9728).",
        )
    resource = str(resource_metadata.resource)
    if not check_resource_allowed(resource_url_from_server_url(url), resource):
        raise GatewayProblem(
            "discovery_failed",
            f"The server's metadata names another resource ({resource[:200]}), not this URL.",
        )
    issuer = str(resource_metadata.authorization_servers[0])
    server_metadata = _first_document(
        build_oauth_authorization_server_metadata_discovery_urls(issuer, url), OAuthMetadata
    )
    if server_metadata is None:
        raise GatewayProblem(
            "discovery_failed", "The authorization server publishes no metadata (RFC 8414)."
        )
    if not issuers_match(str(server_metadata.issuer), issuer):
        raise GatewayProblem(
            "discovery_failed",
            "The authorization server's metadata names another issuer than the one the "
            "resource points to.",
        )
    if "S256" not in (server_metadata.code_challenge_methods_supported or ["S256"]):
        raise GatewayProblem(
            "discovery_failed", "The authorization server does not support PKCE with S256."
        )
    scopes = scope.split() if scope else list(resource_metadata.scopes_supported or [])
    return Discovered(
        resource=resource,
        issuer=str(server_metadata.issuer),
        authorization_endpoint=str(server_metadata.authorization_endpoint),
        token_endpoint=str(server_metadata.token_endpoint),
        revocation_endpoint=str(server_metadata.revocation_endpoint or ""),
        registration_endpoint=str(server_metadata.registration_endpoint or ""),
        scopes=scopes,
        iss_required=bool(server_metadata.authorization_response_iss_parameter_supported),
        cimd_supported=bool(server_metadata.client_id_metadata_document_supported),
        auth_methods=list(server_metadata.token_endpoint_auth_methods_supported or []),
    )


def register(found: Discovered) -> Registration:
    """CIMD where the server takes it and Grantry's address is https, else RFC 7591."""
    document_url = client_metadata_url()
    if found.cimd_supported and is_valid_client_metadata_url(document_url):
        return Registration(client_id=document_url, kind="cimd")
    if not found.registration_endpoint:
        raise GatewayProblem(
            "registration_failed",
            "The authorization server accepts neither a client ID metadata document from "
            "this Grantry (its address must be https) nor dynamic client registration.",
        )
    methods = found.auth_methods or ["client_secret_basic"]
    method = next(
        (m for m in ("client_secret_basic", "client_secret_post", "none") if m in methods), "none"
    )
    body = {
        "client_name": "Grantry",
        "client_uri": settings.GRANTRY_BASE_URL,
        "redirect_uris": [oauth_redirect_uri()],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": method,
        "application_type": "web",
        **({"scope": " ".join(found.scopes)} if found.scopes else {}),
    }
    try:
        response = egress_request(
            "POST", found.registration_endpoint, json=body, max_bytes=METADATA_MAX_BYTES
        )
    except EgressError as exc:
        raise GatewayProblem("registration_failed", f"Registration failed: {exc}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code not in (200, 201) or not isinstance(answer, dict):
        raise GatewayProblem(
            "registration_failed",
            f"The authorization server refused Grantry's registration (HTTP "
            f"{response.status_code}).",
        )
    client_id = answer.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise GatewayProblem("registration_failed", "The registration answer has no client_id.")
    secret = answer.get("client_secret")
    granted = str(answer.get("token_endpoint_auth_method") or method)
    return Registration(
        client_id=client_id[:500],
        client_secret=str(secret) if isinstance(secret, str) else "",
        auth_method=granted if isinstance(secret, str) and secret else "none",
    )


def _probe(url: str) -> str:
    """The server's challenge: its WWW-Authenticate when it refuses an unauthenticated
    client. GatewayProblem when it needs no credential or cannot be reached."""
    check_id = -1 - secrets.randbelow(2**31)
    label = client.host_label(url)
    probe = Upstream(connection_id=check_id, transport="http", label=label, url=url)
    try:
        client.list_tools(probe)
    except UpstreamError as exc:
        if exc.code == "upstream_unauthorized" and "bearer" in exc.www_authenticate.lower():
            return exc.www_authenticate
        raise GatewayProblem(exc.code, exc.message, status=400) from None
    finally:
        client.close_sessions(check_id)
    raise GatewayProblem(
        "no_auth_needed",
        "This server answers without a credential: add it without OAuth.",
        status=400,
    )


def mcp_oauth_start(
    *,
    organization: Organization,
    name: str,
    url: str,
    actor: Any,
    session_key: str | None,
    reconnect: Connection | None = None,
) -> str:
    """Discover, register, save the connection (waiting for consent) and return the
    authorization URL to send the admin's browser to. Reconnect re-uses what was
    discovered and registered."""
    if reconnect is None:
        found = discover(url, _probe(url))
        registration = register(found)
        try:
            with transaction.atomic():
                connection = _save_pending(
                    organization=organization,
                    name=name,
                    url=url,
                    found=found,
                    registration=registration,
                    actor=actor,
                )
        except IntegrityError:  # the name was taken meanwhile
            raise GatewayProblem(
                "name_taken", f"A connection named '{name}' already exists.", status=400
            ) from None
    else:
        connection = reconnect
    server = McpServer.objects.get(pk=connection.pk)
    state = secrets.token_urlsafe(32)
    verifier = oauth.new_code_verifier()
    OAuthState.objects.create(
        state_digest=OAuthState.digest(state),
        session_digest=OAuthState.digest(session_key) if session_key is not None else "",
        user=actor,
        organization=organization,
        provider_key=MCP_PROVIDER_KEY,
        connection_name=connection.name,
        reconnect=connection,
        redirect_uri=oauth_redirect_uri(),
        requested_scopes=list(server.oauth_scopes or []),
        code_verifier=verifier,
    )
    return oauth.authorization_url(
        server.oauth_provider(),
        client_id=server.oauth_client_id,
        redirect_uri=oauth_redirect_uri(),
        state=state,
        code_verifier=verifier,
        scopes=list(server.oauth_scopes or []),
    )


def _save_pending(
    *,
    organization: Organization,
    name: str,
    url: str,
    found: Discovered,
    registration: Registration,
    actor: Any,
) -> Connection:
    connection = Connection(
        organization=organization,
        provider_key=MCP_PROVIDER_KEY,
        name=name,
        auth_type=McpAuth.OAUTH,
        status=ConnectionStatus.NEEDS_REAUTH,
        status_detail="Waiting for an admin's consent at the server's authorization page.",
        created_by=actor if getattr(actor, "pk", None) else None,
    )
    with transaction.atomic():
        connection.save()
    McpServer.objects.create(
        connection=connection,
        transport=McpTransport.HTTP,
        url=url,
        oauth_resource=found.resource,
        oauth_issuer=found.issuer,
        oauth_authorization_endpoint=found.authorization_endpoint,
        oauth_token_endpoint=found.token_endpoint,
        oauth_revocation_endpoint=found.revocation_endpoint,
        oauth_iss_required=found.iss_required,
        oauth_scopes=found.scopes,
        oauth_client_id=registration.client_id,
        oauth_client_secret=registration.client_secret,
        oauth_client_auth=registration.auth_method,
        oauth_registration=registration.kind,
    )
    audit_record(
        action="connection.created",
        organization=organization,
        actor=actor,
        target=connection,
        connection_id=connection.pk,
        provider=MCP_PROVIDER_KEY,
        metadata={
            "auth_type": "oauth2",
            "mcp_transport": "http",
            "mcp_server": url,
            "issuer": found.issuer,
            "registration": registration.kind,
            "pending": "consent",
        },
    )
    return connection


def document_json() -> str:
    return json.dumps(client_metadata_document())
