"""Management-API authentication with a personal API token (`Authorization: Bearer gryp_…`).

`request.user` becomes the token's user and `request.auth` the token itself;
OrgAPIMixin then checks the user's *current* membership of the URL's org and
that the token was minted for that org (else 404). A worker token (`gry_`) is
refused here, as personal tokens are refused on the agent API.
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request
from typing_extensions import override

from apps.accounts.auth_failures import auth_refuse
from apps.accounts.models import PersonalAPIToken
from apps.accounts.services import personal_token_touch
from apps.audit.models import ActorType
from apps.core import audit_context
from apps.core.tokens import PERSONAL_PREFIX, digests_match, parse_token

_WWW_AUTHENTICATE = 'Bearer realm="grantry"'


def _fail(
    code: str, message: str, request: Request, token: PersonalAPIToken | None = None
) -> NoReturn:
    """Throttled, counted and audited like a worker token's (apps.accounts.auth_failures)."""
    fields: dict[str, Any] = {"actor_type": ActorType.ANONYMOUS}
    if token is not None:
        fields = {
            "target_type": "personalapitoken",
            "target_id": token.public_id,
            "token_id": token.public_id,
            "actor_type": ActorType.USER,
            "actor_id": token.user_id,
            "actor_label": token.user.get_username(),
        }
    auth_refuse(
        request._request,
        surface="management",
        code=code,
        message=message,
        www_authenticate=f'{_WWW_AUTHENTICATE}, error="invalid_token"',
        organization_id=token.organization_id if token is not None else None,
        token_public_id=token.public_id if token is not None else "",
        fields=fields,
    )


class PersonalTokenAuthentication(BaseAuthentication):
    @override
    def authenticate_header(self, request: Request) -> str:
        return _WWW_AUTHENTICATE

    def authenticate(self, request: Request) -> tuple[Any, PersonalAPIToken] | None:
        header = get_authorization_header(request).decode("latin-1").strip()
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer":
            return None  # not ours: the session (or nothing) decides
        raw = raw.strip()
        parsed = parse_token(raw, kind="personal")
        if parsed is None:
            if raw.startswith("gry_"):
                _fail(
                    "token_invalid",
                    "Worker tokens cannot call the management API; "
                    f"use a personal API token ({PERSONAL_PREFIX}…).",
                    request,
                )
            _fail("token_malformed", "The token is not a well-formed personal API token.", request)
        token = (
            PersonalAPIToken.objects.select_related("user", "organization")
            .filter(digest=parsed.digest)
            .first()
        )
        if token is None or not digests_match(token.digest, parsed.digest):
            _fail("token_invalid", "The token is unknown or has been revoked.", request)
        if token.revoked_at is not None:
            _fail("token_invalid", "The token is unknown or has been revoked.", request, token)
        if token.expires_at <= timezone.now():
            _fail("token_expired", "The token has expired. Mint a new one.", request, token)
        if not token.user.is_active:
            _fail("token_invalid", "The token's user is inactive.", request, token)
        personal_token_touch(token=token)
        # The request's audit context: this person, through this token (reset by
        # apps.core.middleware.RequestIdMiddleware when the request ends).
        audit_context.bind_user(token.user, token_id=token.public_id)
        return token.user, token
