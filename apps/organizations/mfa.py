"""Whether a person has a second factor (for an organization's "Require two-factor
authentication"; the factors themselves are allauth's): an authenticator app (TOTP) or a passkey
(WebAuthn). Recovery codes alone do not count; they only back up a real factor."""

from __future__ import annotations

from typing import Any

from allauth.mfa.models import Authenticator

SECOND_FACTORS = (Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN)


def has_second_factor(user: Any) -> bool:
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    return Authenticator.objects.filter(user=user, type__in=SECOND_FACTORS).exists()
