"""The invitation a logged-out visitor opened, remembered in their session so
sign-up joins the inviting org instead of creating a new one."""

from __future__ import annotations

from django.http import HttpRequest

from apps.organizations.models import Invitation
from apps.organizations.services import invitation_lookup, invitation_problem

SESSION_KEY = "grantry_pending_invitation"


def pending_key_remember(request: HttpRequest, key: str) -> None:
    request.session[SESSION_KEY] = key


def pending_key(request: HttpRequest) -> str | None:
    session = getattr(request, "session", None)
    return session.get(SESSION_KEY) if session is not None else None


def pending_key_forget(request: HttpRequest) -> None:
    session = getattr(request, "session", None)
    if session is not None:
        session.pop(SESSION_KEY, None)


def pending_invitation(request: HttpRequest) -> Invitation | None:
    """The remembered invitation if it can still be accepted."""
    invitation = invitation_lookup(pending_key(request) or "")
    return invitation if invitation_problem(invitation) is None else None
