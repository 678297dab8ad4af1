"""django-oauth-toolkit, extended into Grantry's authorization server for /mcp.

DOT (with oauthlib) does the protocol: authorization code with PKCE, RFC 8707 resource
on the code and the refresh token, refresh rotation with family reuse detection, CIMD.
This validator narrows it to Grantry's clients and changes what a token *is*:

* only Applications registered by CIMD or DCR (never the Sandbox's manual ones);
* only the `mcp` scope, PKCE always (S256 only: `COMPLIANT_BCP_RFC9700_PKCE_METHOD`,
  and the authorization view refuses anything else up front);
* the authorization code carries the consent's `McpGrant` (in DOT's `claims` column);
* the access token is a `gry_` worker token: DOT keeps its own AccessToken row with the
  same checksum (its refresh logic needs one), and `services.token_issue` stores the
  `WorkerToken` that /mcp authenticates through the usual one-statement lookup;
* a revoked grant, a disabled worker or a client the org no longer allows gets no
  token, and a reused refresh token ends every token of its family;
* a token request with a `DPoP` proof (RFC 9449 §5) gets an access token bound to the
  proof's key (`token_type: DPoP`), and the refresh of a bound token needs a proof of the
  same key (§5.8: the family stays bound); a worker that requires DPoP gets no token without
  a proof (`invalid_dpop_proof`).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from oauth2_provider.models import get_application_model, get_refresh_token_model
from oauth2_provider.oauth2_backends import OAuthLibCore, _add_iss_to_redirect
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.settings import oauth2_settings
from oauthlib.oauth2.rfc6749 import errors as oauth_errors
from typing_extensions import override

from apps.core.tokens import GeneratedToken, generate_token
from apps.mcpauth import services
from apps.mcpauth.models import McpGrant, McpIssuedToken
from apps.workers import dpop

SCOPE = "mcp"
GRANT_CLAIM = "grantry_mcp_grant"


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def redirect_uri_safe(uri: str) -> bool:
    """OAuth 2.1: https, http only on loopback, or a configured private-use scheme."""
    parts = urlsplit(uri)
    if parts.scheme == "https":
        return True
    if parts.scheme == "http":
        return (parts.hostname or "") in LOOPBACK_HOSTS
    return parts.scheme in settings.GRANTRY_MCP_REDIRECT_SCHEMES


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _check_resource(request: Any) -> None:
    """RFC 8707 at the token endpoint: only the /mcp resource (invalid_target)."""
    resource = getattr(request, "resource", None) or []
    for value in [resource] if isinstance(resource, str) else resource:
        if str(value).rstrip("/") != services.mcp_resource_url():
            raise oauth_errors.CustomOAuth2Error(
                error="invalid_target",
                description=f"This server issues tokens for {services.mcp_resource_url()} only.",
                request=request,
            )


def _dpop_jkt(request: Any, worker: Any, *, bound_to: str = "") -> str:
    """The key thumbprint of the token request's DPoP proof ("" for none), checked for
    this endpoint; a proof is required when the worker requires DPoP or the refreshed
    token was bound (`bound_to`, which the proof's key must then be)."""
    headers = getattr(request, "headers", None) or {}
    proof = headers.get("HTTP_DPOP")  # DOT hands oauthlib the WSGI environ
    if proof is None:
        if not bound_to and not worker.require_dpop:
            return ""
        raise oauth_errors.CustomOAuth2Error(
            error="invalid_dpop_proof",
            description="A DPoP proof is required: the worker requires DPoP or the token "
            "is bound to a key.",
            request=request,
        )
    url = f"{settings.GRANTRY_BASE_URL}{reverse('mcpauth:token')}"
    try:
        return dpop.proof_verify(str(proof), method="POST", url=url, jkt=bound_to).jkt
    except dpop.InvalidProof as problem:
        raise oauth_errors.CustomOAuth2Error(
            error="invalid_dpop_proof", description=problem.message, request=request
        ) from None


class GrantryValidator(OAuth2Validator):
    def _load_application(self, client_id: str, request: Any) -> Any:
        client = super()._load_application(client_id, request)
        application_model = get_application_model()
        if client is not None and client.registration_source not in (
            application_model.RegistrationSource.CIMD,
            application_model.RegistrationSource.DCR,
        ):
            request.client = None
            return None
        return client

    @override
    def validate_scopes(
        self,
        client_id: str,
        scopes: list[str],
        client: Any,
        request: Any,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        return set(scopes) <= {SCOPE}

    @override
    def get_default_scopes(
        self, client_id: str, request: Any, *args: Any, **kwargs: Any
    ) -> list[str]:
        return [SCOPE]

    @override
    def is_pkce_required(self, client_id: str, request: Any) -> bool:
        return True

    @override
    def validate_redirect_uri(
        self, client_id: str, redirect_uri: str, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        return redirect_uri_safe(redirect_uri) and super().validate_redirect_uri(
            client_id, redirect_uri, request, *args, **kwargs
        )

    # --- the grant behind a code or a refresh token ----------------------------------

    @override
    def validate_code(
        self, client_id: str, code: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        _check_resource(request)
        if not super().validate_code(client_id, code, client, request, *args, **kwargs):
            # Used before (DOT deletes a code when it is redeemed): the tokens the first
            # use got are revoked too (RFC 6749 §4.1.2).
            services.code_reuse_revoke(code_digest=_digest(code), application=client)
            return False
        claims = getattr(request, "claims", None) or {}
        grant_id = claims.get(GRANT_CLAIM) if isinstance(claims, dict) else None
        if not isinstance(grant_id, int):
            return False
        grant = (
            McpGrant.objects.select_related("worker", "organization", "role")
            .filter(pk=grant_id, application=client)
            .first()
        )
        if grant is None or not services.grant_usable(grant):
            return False
        request.dpop_jkt = _dpop_jkt(request, grant.worker)
        request.mcp_grant = grant
        return True

    @override
    def invalidate_authorization_code(
        self, client_id: str, code: str, request: Any, *args: Any, **kwargs: Any
    ) -> None:
        """Two redemptions racing past `validate_code` both get tokens; the one that
        finds the code already gone revokes every token bought with it."""
        try:
            super().invalidate_authorization_code(client_id, code, request, *args, **kwargs)
        except oauth_errors.InvalidGrantError:
            services.code_reuse_revoke(code_digest=_digest(code), application=request.client)
            raise

    @override
    def validate_refresh_token(
        self, refresh_token: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        _check_resource(request)
        valid = super().validate_refresh_token(refresh_token, client, request, *args, **kwargs)
        checksum = hashlib.sha256(refresh_token.encode("utf-8")).hexdigest()
        row = (
            get_refresh_token_model()
            .objects.filter(token_checksum=checksum)
            .order_by("-id")
            .first()
        )
        if not valid:
            if row is not None and row.revoked is not None and row.token_family:
                # Used after rotation (or after revocation): revoke the whole family,
                # DOT's refresh tokens and the worker tokens (RFC 9700 section 4.14).
                # Done here, not with DOT's global REFRESH_TOKEN_REUSE_PROTECTION,
                # which would change the Sandbox's server too.
                services.family_revoke(
                    token_family=row.token_family, reason="A refresh token was used twice"
                )
            return False
        issued = (
            McpIssuedToken.objects.filter(token_family=row.token_family)
            .select_related(
                "worker_token", "grant", "grant__worker", "grant__organization", "grant__role"
            )
            .order_by("-id")
            .first()
            if row is not None
            else None
        )
        if issued is None or not services.grant_usable(issued.grant):
            return False
        if services.revoked_by_someone(issued):
            # Revoked like any other token (worker page, kill switch): the refresh
            # family ends with it.
            services.family_revoke(
                token_family=row.token_family,
                reason="Its access token was revoked",
                action="mcp.refresh_refused",
            )
            return False
        request.dpop_jkt = _dpop_jkt(
            request, issued.grant.worker, bound_to=issued.worker_token.dpop_jkt
        )
        request.mcp_grant = issued.grant
        return True

    # --- issuing: the access token is a worker token ---------------------------------

    def _save_bearer_token(
        self, token: dict[str, Any], request: Any, *args: Any, **kwargs: Any
    ) -> Any:
        grant: McpGrant = request.mcp_grant
        previous = getattr(request, "refresh_token_instance", None)
        seconds = services.token_seconds(grant.organization)
        generated: GeneratedToken = generate_token("worker")
        token["access_token"] = generated.raw
        token["expires_in"] = seconds
        token["scope"] = SCOPE
        dpop_jkt = getattr(request, "dpop_jkt", "")
        if dpop_jkt:
            token["token_type"] = "DPoP"
        super()._save_bearer_token(token, request, *args, **kwargs)
        refresh = (
            get_refresh_token_model()
            .objects.filter(access_token__token_checksum=generated.digest)
            .first()
        )
        family = refresh.token_family if refresh is not None else None
        code = getattr(request, "code", None) if previous is None else None
        services.token_issue(
            grant=grant,
            generated=generated,
            expires_at=timezone.now() + timedelta(seconds=seconds),
            token_family=family,
            refreshed=previous is not None,
            code_digest=_digest(code) if code else "",
            dpop_jkt=dpop_jkt,
        )

    @override
    def revoke_token(
        self, token: str, token_type_hint: str, request: Any, *args: Any, **kwargs: Any
    ) -> None:
        """RFC 7009: the client ends its own tokens (access or refresh)."""
        checksum = hashlib.sha256(token.encode("utf-8")).hexdigest()
        issued = services.issued_for_digest(checksum)
        refresh = get_refresh_token_model().objects.filter(token_checksum=checksum).first()
        family = issued.token_family if issued else (refresh.token_family if refresh else None)
        super().revoke_token(token, token_type_hint, request, *args, **kwargs)
        if (
            family is not None
            and McpIssuedToken.objects.filter(
                token_family=family, grant__application=request.client
            ).exists()
        ):
            services.family_revoke(
                token_family=family,
                reason="Revoked by the OAuth client",
                action="mcp.token_revoked_by_client",
                by_client=True,
            )


class GrantryOAuthLibCore(OAuthLibCore):
    """The RFC 9207 `iss` on the authorization response names Grantry's issuer (DOT
    derives it from the `oauth2_provider` namespace, which is the Sandbox's)."""

    def create_authorization_response(
        self, request: Any, scopes: Any, credentials: Any, allow: Any
    ) -> Any:
        uri, headers, body, status = super().create_authorization_response(
            request, scopes, credentials, allow
        )
        if uri is not None and oauth2_settings.COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS:
            uri = _add_iss_to_redirect(uri, services.issuer_url())
            headers["Location"] = uri
        return uri, headers, body, status
