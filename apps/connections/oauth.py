"""The OAuth 2.0 protocol side of connections: authlib over Grantry's egress.

authlib does the protocol (authorization URL, PKCE S256 challenge, client
authentication, token request bodies, error parsing, RFC 7009 revocation).
Every HTTP request it makes goes through `apps.core.egress` via a small
session adapter, instead of authlib's own httpx integration: in this authlib
version that integration is built on `httpx2`, a second HTTP stack, and using
it would bypass the SSRF guard, the size cap and the shared connection pool.

Refresh sends NO scope: authlib re-sends the client's `scope` by default and
some servers answer `invalid_scope`; the client here is built without one, so
the server keeps the scope it granted.

This module handles plaintext values only as arguments; reading them from
the database is `apps.connections.custody`'s job.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from authlib.common.security import generate_token
from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.client import OAuth2Client

from apps.core.egress import EgressError, EgressResponse, egress_request
from apps.providers.catalog import Provider, Revocation


class TokenEndpointError(Exception):
    """The token endpoint failed. `error` is the OAuth error code (e.g.
    "invalid_grant") or "" for a transport/server failure (`transient`)."""

    def __init__(self, message: str, *, error: str = "", transient: bool = False) -> None:
        super().__init__(message)
        self.error = error
        self.transient = transient


class _HTTPStatusError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


class _Response:
    """What authlib expects from a `requests`-like response."""

    def __init__(self, response: EgressResponse) -> None:
        self._response = response
        self.status_code = response.status_code
        self.headers = response.headers
        self.content = response.content

    def json(self) -> Any:
        return self._response.json()

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise _HTTPStatusError(self.status_code)


class _EgressSession:
    """The `session` authlib's OAuth2Client posts through."""

    def post(
        self,
        url: str,
        data: dict[str, str] | None = None,
        headers: Any = None,
        auth: Any = None,
        **_: Any,
    ) -> _Response:
        body = urlencode(data or {})
        request_headers = dict(headers or {})
        if auth is not None:
            url, request_headers, body = auth.prepare("POST", url, request_headers, body)
        request_headers.pop("Content-Length", None)
        return _Response(egress_request("POST", url, headers=request_headers, content=body))


def new_code_verifier() -> str:
    return generate_token(64)


def _client(
    provider: Provider, *, client_id: str, client_secret: str, redirect_uri: str = ""
) -> OAuth2Client:
    method = getattr(provider, "token_endpoint_auth_method", "") or "client_secret_basic"
    if not client_secret:
        method = "none"
    return OAuth2Client(
        _EgressSession(),
        client_id=client_id,
        client_secret=client_secret,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        scope=None,  # never re-send a scope on refresh
        redirect_uri=redirect_uri or None,
        code_challenge_method="S256",
    )


def authorization_url(
    provider: Provider,
    *,
    client_id: str,
    redirect_uri: str,
    state: str,
    code_verifier: str,
    scopes: list[str],
) -> str:
    client = _client(provider, client_id=client_id, client_secret="", redirect_uri=redirect_uri)
    extra = dict(getattr(provider, "authorize_params", {}) or {})
    url, _ = client.create_authorization_url(
        provider.authorize_url,
        state=state,
        code_verifier=code_verifier,
        scope=provider.scope_separator.join(scopes) if scopes else None,
        **extra,
    )
    return str(url)


def _token_call(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        token = fn(*args, **kwargs)
    except OAuth2Error as exc:
        error = str(getattr(exc, "error", "") or "oauth_error")
        raise TokenEndpointError(
            f"The provider refused the token request ({error}).",
            error=error,
            transient=error in {"temporarily_unavailable", "server_error"},
        ) from exc
    except EgressError as exc:
        raise TokenEndpointError(
            f"The token endpoint could not be reached: {exc}", transient=True
        ) from exc
    except _HTTPStatusError as exc:
        raise TokenEndpointError(
            f"The token endpoint answered HTTP {exc.status_code}.",
            transient=exc.status_code >= 500 or exc.status_code == 429,
        ) from exc
    except ValueError as exc:
        raise TokenEndpointError(
            "The token endpoint answered something that is not a token."
        ) from exc
    return dict(token)


def exchange_code(
    provider: Provider,
    *,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    code: str,
    code_verifier: str,
    resource: str = "",
) -> dict[str, Any]:
    """`resource`: the RFC 8707 resource indicator (an upstream MCP server's)."""
    client = _client(
        provider, client_id=client_id, client_secret=client_secret, redirect_uri=redirect_uri
    )
    return _token_call(
        client.fetch_token,
        provider.token_url,
        grant_type="authorization_code",
        code=code,
        code_verifier=code_verifier,
        redirect_uri=redirect_uri,
        **({"resource": resource} if resource else {}),
    )


def refresh(
    provider: Provider,
    *,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    resource: str = "",
) -> dict[str, Any]:
    client = _client(provider, client_id=client_id, client_secret=client_secret)
    return _token_call(
        client.refresh_token,
        provider.token_url,
        refresh_token=refresh_token,
        **({"resource": resource} if resource else {}),
    )


def revoke(
    provider: Provider, *, client_id: str, client_secret: str, token: str, token_type_hint: str
) -> bool:
    """Revoke one token the way the provider's endpoint wants it (`provider.revocation`).
    False when this kind of token is not revoked there (GitHub, Slack and Zendesk take the
    access token, HubSpot the refresh token); raises TokenEndpointError when the endpoint
    does not confirm the revocation."""
    style = Revocation(provider.revocation)
    if style == Revocation.RFC7009:
        _revoke_rfc7009(provider, client_id, client_secret, token, token_type_hint)
        return True
    if style == Revocation.REFRESH_TOKEN_IN_PATH:
        if token_type_hint != "refresh_token":
            return False
        url = f"{provider.revocation_url.rstrip('/')}/{quote(token, safe='')}"
        _revoke_call("DELETE", url, headers={})
        return True
    if token_type_hint != "access_token":
        return False
    if style == Revocation.CLIENT_BASIC_JSON:
        pair = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        url = provider.revocation_url.replace("{client_id}", quote(client_id, safe=""))
        _revoke_call(
            "DELETE",
            url,
            headers={**provider.default_headers, "Authorization": f"Basic {pair}"},
            json={"access_token": token},
        )
        return True
    _revoke_call(
        provider.revocation_method or "POST",
        provider.revocation_url,
        headers={"Authorization": f"Bearer {token}"},
    )
    return True


def _revoke_rfc7009(
    provider: Provider, client_id: str, client_secret: str, token: str, token_type_hint: str
) -> None:
    client = _client(provider, client_id=client_id, client_secret=client_secret)
    try:
        response = client.revoke_token(
            provider.revocation_url, token=token, token_type_hint=token_type_hint
        )
    except EgressError as exc:
        raise TokenEndpointError(
            f"The revocation endpoint could not be reached: {exc}", transient=True
        ) from exc
    if response.status_code != 200:
        raise TokenEndpointError(f"The revocation endpoint answered HTTP {response.status_code}.")


def _revoke_call(method: str, url: str, *, headers: dict[str, str], json: Any = None) -> None:
    """One non-RFC-7009 revocation request. Success is a 2xx answer, and for Slack-style
    APIs (HTTP 200 with {"ok": false, "error": …}) a body that does not say otherwise."""
    try:
        response = egress_request(
            method, url, headers={"Accept": "application/json", **headers}, json=json
        )
    except EgressError as exc:
        raise TokenEndpointError(
            f"The revocation endpoint could not be reached: {exc}", transient=True
        ) from exc
    if not 200 <= response.status_code < 300:
        raise TokenEndpointError(f"The revocation endpoint answered HTTP {response.status_code}.")
    try:
        body = response.json() if response.content else None
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("ok") is False:
        error = str(body.get("error") or "unknown")[:100]
        raise TokenEndpointError(f"The provider refused the revocation ({error}).", error=error)


def expected_issuer_matches(provider: Provider, iss: str) -> bool:
    """RFC 9207 mix-up defence: the `iss` a server sends must be this provider's.

    The catalog has no issuer field, so the issuer is accepted when it is the
    origin-and-path prefix of the provider's authorization endpoint (as it is
    for every server that publishes RFC 8414 metadata)."""
    issuer = getattr(provider, "issuer", "") or ""
    if issuer:
        return iss.rstrip("/") == issuer.rstrip("/")
    iss_parts = urlsplit(iss)
    auth_parts = urlsplit(provider.authorize_url)
    return (
        bool(iss_parts.scheme and iss_parts.netloc)
        and (iss_parts.scheme, iss_parts.netloc) == (auth_parts.scheme, auth_parts.netloc)
        and auth_parts.path.startswith(iss_parts.path.rstrip("/"))
    )


def granted_scopes(provider: Provider, token: dict[str, Any], requested: list[str]) -> list[str]:
    """RFC 6749 5.1: no `scope` in the answer means the requested scope was granted."""
    raw = token.get("scope")
    if raw is None:
        return list(requested)
    if isinstance(raw, list):
        return [str(s) for s in raw]
    separator = provider.scope_separator or " "
    parts = str(raw).replace(",", separator).split(separator)
    return [p.strip() for p in parts if p.strip()]


def account_from_identity(provider: Provider, body: Any) -> str:
    """Follow the dotted `userinfo_account_field` into an identity response."""
    value: Any = body
    for part in (provider.userinfo_account_field or "").split("."):
        if not part:
            continue
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return ""
    return str(value)[:200] if value not in (None, "", {}, []) else ""
