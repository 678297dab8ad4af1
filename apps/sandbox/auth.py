"""How the Sandbox API knows who is calling: a DOT access token or an "sbx_" key.

This is the Sandbox's own scheme, on purpose independent of Grantry's API
authentication: the Sandbox plays an outside SaaS that Grantry calls."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.http import HttpRequest
from oauth2_provider.oauth2_backends import get_oauthlib_core

from apps.sandbox.models import SandboxApiKey
from apps.sandbox.services import API_KEY_PREFIX, api_key_digest

ALL_SCOPES = frozenset({"read", "write"})


class SandboxAuthError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Caller:
    user: User
    kind: str  # "oauth" or "api_key"
    scopes: frozenset[str]

    def require_scope(self, scope: str) -> None:
        if scope not in self.scopes:
            raise SandboxAuthError(
                403,
                "insufficient_scope",
                f"This {'token' if self.kind == 'oauth' else 'key'} lacks the "
                f"'{scope}' scope. Reconnect and grant '{scope}'.",
            )


def _bearer(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if not header:
        raise SandboxAuthError(
            401, "unauthorized", "Send 'Authorization: Bearer <access token or sbx_ key>'."
        )
    if scheme.lower() != "bearer" or not credential.strip():
        raise SandboxAuthError(
            401, "unauthorized", "The Authorization header must use the Bearer scheme."
        )
    return credential.strip()


def authenticate(request: HttpRequest) -> Caller:
    credential = _bearer(request)
    if credential.startswith(API_KEY_PREFIX):
        api_key = (
            SandboxApiKey.objects.active()
            .select_related("user")
            .filter(key_digest=api_key_digest(credential))
            .first()
        )
        if api_key is None or not api_key.user.is_active:
            raise SandboxAuthError(401, "invalid_token", "The API key is unknown or revoked.")
        return Caller(user=api_key.user, kind="api_key", scopes=ALL_SCOPES)

    valid, oauth_request = get_oauthlib_core().verify_request(request, scopes=[])
    access_token = getattr(oauth_request, "access_token", None) if valid else None
    if access_token is None or access_token.user is None or not access_token.user.is_active:
        raise SandboxAuthError(
            401, "invalid_token", "The access token is unknown, expired or revoked."
        )
    return Caller(
        user=access_token.user, kind="oauth", scopes=frozenset(access_token.scope.split())
    )
