"""Audit events about people (login, logout, MFA, passwords).

A person can belong to several organizations; each of them sees the event in
its own trail. Events about an unknown person (a failed login for an email
nobody has) go to the global chain (organization=None)."""

from __future__ import annotations

from typing import Any

from allauth.account.signals import (
    email_added,
    email_changed,
    email_confirmed,
    email_removed,
    password_changed,
    password_reset,
    password_set,
)
from allauth.account.signals import user_logged_in as allauth_user_logged_in
from allauth.mfa.models import Authenticator
from allauth.mfa.signals import authentication_failed as mfa_authentication_failed
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.http import HttpRequest

from apps.audit.models import ActorType, Outcome
from apps.audit.services import audit_record
from apps.organizations.models import Membership


def _org_ids(user: Any) -> list[int | None]:
    ids: list[int | None] = list(
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
    outcome: str = Outcome.SUCCESS,
    metadata: dict[str, Any] | None = None,
) -> None:
    """One event per organization of `user`, written in one transaction."""
    for org_id in _org_ids(user):
        audit_record(
            action=action,
            organization_id=org_id,
            actor=user,
            target=user,
            target_label=user.email or user.get_username(),
            outcome=outcome,
            metadata=metadata,
        )


@transaction.atomic
def login_failed(*, email: str) -> None:
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
        )


@receiver(allauth_user_logged_in, dispatch_uid="grantry_audit_login")
def _on_login(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    user_event(action="auth.login", user=user)


@receiver(user_logged_out, dispatch_uid="grantry_audit_logout")
def _on_logout(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    if user is not None:
        user_event(action="auth.logout", user=user)


@receiver(password_changed, dispatch_uid="grantry_audit_password_changed")
def _on_password_changed(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    user_event(action="auth.password_changed", user=user)


@receiver(password_set, dispatch_uid="grantry_audit_password_set")
def _on_password_set(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    user_event(action="auth.password_set", user=user)


@receiver(password_reset, dispatch_uid="grantry_audit_password_reset")
def _on_password_reset(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    user_event(action="auth.password_reset", user=user)


# Email addresses decide which invitations a person can accept: audit changes.
@receiver(email_added, dispatch_uid="grantry_audit_email_added")
def _on_email_added(
    sender: Any, request: HttpRequest, user: Any, email_address: Any, **kwargs: Any
) -> None:
    user_event(
        action="auth.email_added",
        user=user,
        metadata={"email": email_address.email},
    )


@receiver(email_removed, dispatch_uid="grantry_audit_email_removed")
def _on_email_removed(
    sender: Any, request: HttpRequest, user: Any, email_address: Any, **kwargs: Any
) -> None:
    user_event(
        action="auth.email_removed",
        user=user,
        metadata={"email": email_address.email},
    )


@receiver(email_confirmed, dispatch_uid="grantry_audit_email_confirmed")
def _on_email_confirmed(
    sender: Any, request: HttpRequest, email_address: Any, **kwargs: Any
) -> None:
    user_event(
        action="auth.email_verified",
        user=email_address.user,
        metadata={"email": email_address.email},
    )


@receiver(email_changed, dispatch_uid="grantry_audit_email_changed")
def _on_email_changed(
    sender: Any,
    request: HttpRequest,
    user: Any,
    from_email_address: Any,
    to_email_address: Any,
    **kwargs: Any,
) -> None:
    previous = from_email_address.email if from_email_address is not None else ""
    user_event(
        action="auth.email_primary_changed",
        user=user,
        metadata={"from": previous, "to": to_email_address.email},
    )


# MFA changes are audited from the model signals, not allauth's
# authenticator_added signal: allauth sends that one after commit, and the
# event must be written in the same transaction as the change.
@receiver(post_save, sender=Authenticator, dispatch_uid="grantry_audit_mfa_saved")
def _on_authenticator_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    if not created:
        return  # a use of the authenticator (last_used_at), not a change
    action = (
        "auth.mfa_recovery_codes_generated"
        if instance.type == Authenticator.Type.RECOVERY_CODES
        else "auth.mfa_enabled"
    )
    user_event(
        action=action,
        user=instance.user,
        metadata={"type": instance.type},
    )


@receiver(post_delete, sender=Authenticator, dispatch_uid="grantry_audit_mfa_deleted")
def _on_authenticator_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    if instance.type == Authenticator.Type.RECOVERY_CODES:
        return  # replaced on regeneration, or cleaned up with the last factor
    user_event(
        action="auth.mfa_disabled",
        user=instance.user,
        metadata={"type": instance.type},
    )


@receiver(mfa_authentication_failed, dispatch_uid="grantry_audit_mfa_failed")
def _on_mfa_failed(
    sender: Any, request: HttpRequest, user: Any, authenticator: Any, **kwargs: Any
) -> None:
    """A wrong second-factor code (never the code itself)."""
    user_event(
        action="auth.mfa_failed",
        user=user,
        outcome=Outcome.FAILURE,
        metadata={
            "type": getattr(authenticator, "type", ""),
            "reauthentication": bool(kwargs.get("reauthentication")),
        },
    )
