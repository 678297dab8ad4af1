"""Audit events about people (login, logout, MFA, passwords).

A person can belong to several organizations; each of them sees the event in
its own trail. Events about an unknown person (a failed login for an email
nobody has) go to the global chain (organization=None)."""

from __future__ import annotations

from typing import Any

from allauth.account.signals import password_changed, password_reset, password_set
from allauth.account.signals import user_logged_in as allauth_user_logged_in
from allauth.mfa.signals import authenticator_added, authenticator_removed, authenticator_reset
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest

from apps.audit.models import ActorType, Outcome
from apps.audit.services import audit_record
from apps.organizations.models import Membership


def _org_ids(user: Any) -> list[int | None]:
    ids = list(
        Membership.objects.filter(user=user)
        .order_by("organization_id")
        .values_list("organization_id", flat=True)
    )
    return ids or [None]


@transaction.atomic
def user_event(
    *,
    action: str,
    user: Any,
    request: HttpRequest | None,
    outcome: str = Outcome.SUCCESS,
    metadata: dict[str, Any] | None = None,
) -> None:
    """One event per organization of `user`, written in one transaction."""
    for org_id in _org_ids(user):
        audit_record(
            action=action,
            organization_id=org_id,
            actor_type=ActorType.USER,
            actor_id=user.pk,
            actor_label=user.get_username(),
            target=user,
            target_label=user.email or user.get_username(),
            outcome=outcome,
            metadata=metadata,
            request=request,
        )


@transaction.atomic
def login_failed(*, request: HttpRequest | None, email: str) -> None:
    """The attempted email is recorded, never the password."""
    email = email.strip()[:254]
    user = get_user_model().objects.filter(email__iexact=email).first() if email else None
    org_ids = _org_ids(user) if user is not None else [None]
    for org_id in org_ids:
        audit_record(
            action="auth.login_failed",
            organization_id=org_id,
            actor_type=ActorType.ANONYMOUS,
            target_type="user",
            target_id=user.pk if user is not None else "",
            target_label=email,
            outcome=Outcome.FAILURE,
            metadata={"email": email},
            request=request,
        )


@receiver(allauth_user_logged_in, dispatch_uid="grantry_audit_login")
def _on_login(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    user_event(action="auth.login", user=user, request=request)


@receiver(user_logged_out, dispatch_uid="grantry_audit_logout")
def _on_logout(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    if user is not None:
        user_event(action="auth.logout", user=user, request=request)


@receiver(password_changed, dispatch_uid="grantry_audit_password_changed")
def _on_password_changed(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    user_event(action="auth.password_changed", user=user, request=request)


@receiver(password_set, dispatch_uid="grantry_audit_password_set")
def _on_password_set(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    user_event(action="auth.password_set", user=user, request=request)


@receiver(password_reset, dispatch_uid="grantry_audit_password_reset")
def _on_password_reset(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    user_event(action="auth.password_reset", user=user, request=request)


@receiver(authenticator_added, dispatch_uid="grantry_audit_mfa_added")
def _on_mfa_added(
    sender: Any, request: HttpRequest, user: Any, authenticator: Any, **kwargs: Any
) -> None:
    user_event(
        action="auth.mfa_enabled", user=user, request=request, metadata={"type": authenticator.type}
    )


@receiver(authenticator_removed, dispatch_uid="grantry_audit_mfa_removed")
def _on_mfa_removed(
    sender: Any, request: HttpRequest, user: Any, authenticator: Any, **kwargs: Any
) -> None:
    user_event(
        action="auth.mfa_disabled",
        user=user,
        request=request,
        metadata={"type": authenticator.type},
    )


@receiver(authenticator_reset, dispatch_uid="grantry_audit_mfa_reset")
def _on_mfa_reset(
    sender: Any, request: HttpRequest, user: Any, authenticator: Any, **kwargs: Any
) -> None:
    user_event(
        action="auth.mfa_recovery_codes_regenerated",
        user=user,
        request=request,
        metadata={"type": authenticator.type},
    )
