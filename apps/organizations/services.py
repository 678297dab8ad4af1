"""Writes to tenants: organizations, memberships and invitations.

Every function here changes security state, so each one writes its audit
event inside its own transaction: if the event cannot be written, nothing
changes. Emails go out only after the transaction commits."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from apps.audit.services import audit_record, audit_retention_set
from apps.audit.services.archive import RETENTION_MAX_MONTHS
from apps.organizations.mfa import has_second_factor
from apps.organizations.models import Invitation, Membership, Organization, OrgRole
from apps.organizations.signals import membership_removed

MAX_TOKEN_DAYS_LIMIT = 366
RETENTION_MESSAGE = (
    f"Choose a retention between 1 and {RETENTION_MAX_MONTHS} months, or leave it empty "
    "to keep the audit trail for ever."
)
# Slugs that would shadow a fixed route or confuse readers of a URL.
RESERVED_SLUGS = frozenset({"admin", "api", "accounts", "new", "settings", "static", "o"})


class OrganizationError(ValidationError):
    """A rule of the tenant model was broken; the message is safe to show the user.

    `code` tells callers what kind of rule: "forbidden" (the actor's role is too
    low), "last_owner" (the org would be left without an owner), "conflict" (the
    current state does not allow it); field errors carry none."""


LAST_OWNER_MESSAGE = "This is the last owner of the organization. Make someone else an owner first."


def invitation_key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50].strip("-") or "org"
    if base in RESERVED_SLUGS:
        base = f"{base}-org"
    slug = base
    while Organization.objects.filter(slug=slug).exists():
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


# --- Organizations -----------------------------------------------------------


@transaction.atomic
def organization_create(*, name: str, owner: Any) -> Organization:
    """A new organization with `owner` as its first owner."""
    name = (name or "").strip()
    if not name:
        raise OrganizationError({"name": "Enter a name for the organization."})
    if len(name) > 120:
        raise OrganizationError({"name": "The name is too long (120 characters at most)."})
    organization = Organization.objects.create(name=name, slug=_unique_slug(name))
    membership = Membership.objects.create(
        organization=organization, user=owner, role=OrgRole.OWNER
    )
    audit_record(
        action="org.created",
        organization=organization,
        target=organization,
        metadata={"slug": organization.slug},
        actor=owner,
    )
    audit_record(
        action="member.joined",
        organization=organization,
        target=membership,
        metadata={"role": OrgRole.OWNER, "via": "signup"},
        actor=owner,
    )
    return organization


def _settings_errors(
    organization: Organization,
    actor: Any,
    name: str,
    max_token_days: int | None,
    require_mfa: bool | None,
    audit_retention_months: int | str | None = "keep",
) -> dict[str, str]:
    """organization_update's field errors (none: the values may be saved)."""
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "Enter a name for the organization."
    elif len(name) > 120:
        errors["name"] = "The name is too long (120 characters at most)."
    if max_token_days is not None and not 1 <= max_token_days <= MAX_TOKEN_DAYS_LIMIT:
        errors["max_token_days"] = f"Choose between 1 and {MAX_TOKEN_DAYS_LIMIT} days."
    if isinstance(audit_retention_months, int) and not (
        1 <= audit_retention_months <= RETENTION_MAX_MONTHS
    ):
        errors["audit_retention_months"] = RETENTION_MESSAGE
    if require_mfa and not organization.require_mfa and not has_second_factor(actor):
        errors["require_mfa"] = (
            "Set up a second factor for yourself first (an authenticator app or a passkey), "
            "so you are not locked out."
        )
    return errors


@transaction.atomic
def organization_update(
    *,
    organization: Organization,
    actor: Any,
    name: str,
    max_token_days: int | None,
    store_broker_input: bool | None = None,
    require_mfa: bool | None = None,
    audit_retention_months: int | str | None = "keep",
) -> Organization:
    """Rename the org, set the longest lifetime a worker token may have and whether
    members need a second factor. `store_broker_input` keeps raw broker input in audit
    events; None (for it or `require_mfa`) leaves that setting as it is. An admin can only
    require MFA once they have a second factor themselves, so they cannot lock themselves out.
    `audit_retention_months` (whole months, None: for ever; "keep": unchanged) is the
    audit trail's retention (apps.audit.services.archive, its own audit event)."""
    name = (name or "").strip()
    errors = _settings_errors(
        organization, actor, name, max_token_days, require_mfa, audit_retention_months
    )
    if errors:
        raise OrganizationError(errors)
    locked = Organization.objects.select_for_update().get(pk=organization.pk)
    if audit_retention_months != "keep":
        audit_retention_set(
            organization=locked,
            actor=actor,
            months=audit_retention_months if isinstance(audit_retention_months, int) else None,
        )
    changes: dict[str, dict[str, Any]] = {}
    if require_mfa is not None and locked.require_mfa != require_mfa:
        changes["require_mfa"] = {"from": locked.require_mfa, "to": require_mfa}
        locked.require_mfa = require_mfa
    if locked.name != name:
        changes["name"] = {"from": locked.name, "to": name}
    if locked.max_token_days != max_token_days:
        changes["max_token_days"] = {"from": locked.max_token_days, "to": max_token_days}
    if store_broker_input is not None and locked.store_broker_input != store_broker_input:
        changes["store_broker_input"] = {
            "from": locked.store_broker_input,
            "to": store_broker_input,
        }
    if not changes:
        return locked
    locked.name = name
    locked.max_token_days = max_token_days
    if store_broker_input is not None:
        locked.store_broker_input = store_broker_input
    locked.save(update_fields=["name", "max_token_days", "store_broker_input", "require_mfa"])
    audit_record(
        action="org.updated",
        organization=locked,
        target=locked,
        metadata={"changes": changes},
        actor=actor,
    )
    return locked


# --- Memberships -------------------------------------------------------------


def _lock_owners(organization: Organization) -> list[Membership]:
    """Row-lock every owner membership of the org. Two concurrent demotions or
    removals serialise here, so the second one sees the first one's result."""
    return list(
        Membership.objects.select_for_update()
        .filter(organization=organization, role=OrgRole.OWNER)
        .order_by("pk")
    )


def _check_actor_may_touch(actor_membership: Membership, target_role: str, new_role: str) -> None:
    if not actor_membership.can_manage():
        raise OrganizationError("Only admins and owners manage members.", code="forbidden")
    if OrgRole.OWNER in (target_role, new_role) and actor_membership.role != OrgRole.OWNER:
        raise OrganizationError(
            "Only an owner can grant or take away the owner role.", code="forbidden"
        )


@transaction.atomic
def membership_change_role(
    *,
    membership: Membership,
    role: str,
    actor_membership: Membership,
) -> Membership:
    """Change a member's role. The last owner can never be demoted."""
    if role not in OrgRole.values:
        raise OrganizationError({"role": "Choose one of owner, admin, reviewer or member."})
    if actor_membership.organization_id != membership.organization_id:
        raise OrganizationError("That member is not in this organization.")
    owners = _lock_owners(membership.organization)
    target = Membership.objects.select_for_update().get(pk=membership.pk)
    actor_now = Membership.objects.get(pk=actor_membership.pk)
    _check_actor_may_touch(actor_now, target.role, role)
    if target.role == role:
        return target
    if target.role == OrgRole.OWNER and len(owners) <= 1:
        raise OrganizationError(LAST_OWNER_MESSAGE, code="last_owner")
    previous = target.role
    target.role = role
    target.save(update_fields=["role"])
    audit_record(
        action="member.role_changed",
        organization=target.organization,
        target=target,
        metadata={"from": previous, "to": role, "email": target.user.email},
        actor=actor_now.user,
    )
    return target


@transaction.atomic
def membership_remove(*, membership: Membership, actor_membership: Membership) -> None:
    """Remove a member and revoke their personal API tokens for this organization
    (so they do not work again if the person is re-invited). The last owner can
    never be removed."""
    if actor_membership.organization_id != membership.organization_id:
        raise OrganizationError("That member is not in this organization.")
    owners = _lock_owners(membership.organization)
    target = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk)
    actor_now = Membership.objects.get(pk=actor_membership.pk)
    _check_actor_may_touch(actor_now, target.role, target.role)
    if target.role == OrgRole.OWNER and len(owners) <= 1:
        raise OrganizationError(LAST_OWNER_MESSAGE, code="last_owner")
    audit_record(
        action="member.removed",
        organization=target.organization,
        target=target,
        metadata={"role": target.role, "email": target.user.email},
        actor=actor_now.user,
    )
    # apps.accounts revokes the member's personal tokens here (it sits above us).
    membership_removed.send(sender=Membership, membership=target, actor=actor_now.user)
    target.delete()


# --- Invitations -------------------------------------------------------------


@dataclass(frozen=True)
class IssuedInvitation:
    """The invitation and its link key. The key exists only here and in the email."""

    invitation: Invitation
    key: str

    def __repr__(self) -> str:
        return f"IssuedInvitation(invitation={self.invitation.pk})"


def invitation_url(key: str) -> str:
    return settings.GRANTRY_BASE_URL + reverse("invitations:accept", kwargs={"key": key})


@transaction.atomic
def invitation_create(
    *,
    organization: Organization,
    email: str,
    role: str,
    actor_membership: Membership,
) -> IssuedInvitation:
    """Invite `email` with `role`; emails a single-use link valid for 7 days."""
    email = (email or "").strip().lower()
    errors: dict[str, str] = {}
    try:
        validate_email(email)
    except ValidationError:
        errors["email"] = "Enter a valid email address."
    if role not in OrgRole.values:
        errors["role"] = "Choose one of owner, admin, reviewer or member."
    if errors:
        raise OrganizationError(errors)
    if actor_membership.organization_id != organization.pk:
        raise OrganizationError("You are not a member of this organization.")
    _check_actor_may_touch(actor_membership, role, role)
    if Membership.objects.filter(organization=organization, user__email__iexact=email).exists():
        raise OrganizationError({"email": f"{email} is already a member."})
    # Inviting the same address again replaces the earlier link.
    earlier = list(
        Invitation.objects.select_for_update().filter(
            organization=organization,
            email__iexact=email,
            accepted_at__isnull=True,
            revoked_at__isnull=True,
        )
    )
    for old in earlier:
        _check_actor_may_touch(actor_membership, old.role, role)
    replaced = [old.pk for old in earlier]
    if replaced:
        Invitation.objects.filter(pk__in=replaced).update(revoked_at=timezone.now())
    key = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        organization=organization,
        email=email,
        role=role,
        key_digest=invitation_key_digest(key),
        invited_by=actor_membership.user,
    )
    audit_record(
        action="member.invited",
        organization=organization,
        target=invitation,
        metadata={"email": email, "role": role, "replaced_invitations": replaced},
        actor=actor_membership.user,
    )
    url = invitation_url(key)
    inviter = actor_membership.user.email
    transaction.on_commit(lambda: _send_invitation_email(invitation, url, inviter))
    return IssuedInvitation(invitation=invitation, key=key)


def _send_invitation_email(invitation: Invitation, url: str, inviter: str) -> None:
    context = {"invitation": invitation, "url": url, "inviter": inviter}
    send_mail(
        subject=f"You are invited to {invitation.organization.name} on Grantry",
        message=render_to_string("organizations/email/invitation.txt", context),
        from_email=None,
        recipient_list=[invitation.email],
    )


def invitation_lookup(key: str) -> Invitation | None:
    """The invitation a link key opens (usable or not), or None."""
    if not key:
        return None
    return (
        Invitation.objects.select_related("organization", "invited_by")
        .filter(key_digest=invitation_key_digest(key))
        .first()
    )


def invitation_problem(invitation: Invitation | None) -> str | None:
    """Why this invitation cannot be accepted, in words for the user, or None."""
    if invitation is None:
        return "This invitation link is not valid. Ask the person who invited you for a new one."
    if invitation.revoked_at is not None:
        return "This invitation was withdrawn. Ask an admin of the organization for a new one."
    if invitation.accepted_at is not None:
        return "This invitation has already been used."
    if invitation.expires_at <= timezone.now():
        return "This invitation has expired. Ask an admin of the organization for a new one."
    return None


def _user_has_email(user: Any, email: str) -> bool:
    from allauth.account.models import EmailAddress

    return EmailAddress.objects.filter(user=user, email__iexact=email, verified=True).exists()


@transaction.atomic
def invitation_accept(
    *,
    key: str = "",
    user: Any,
    invitation_id: int | None = None,
) -> Membership:
    """Join the inviting org with the invited role. The link works once, before
    it expires, and only for the invited (verified) email address. Without the
    link's key, `invitation_id` names one of `selectors.invitations_for_user(user)`: the
    verified address is what authorises it either way."""
    if invitation_id is not None:
        found = Invitation.objects.filter(pk=invitation_id).first()
    else:
        found = invitation_lookup(key)
    invitation = (
        Invitation.objects.select_for_update().get(pk=found.pk) if found is not None else None
    )
    problem = invitation_problem(invitation)
    if problem:
        raise OrganizationError(problem)
    assert invitation is not None
    if not _user_has_email(user, invitation.email):
        raise OrganizationError(
            f"This invitation is for {invitation.email}. Log in with that address "
            "(verified) to accept it."
        )
    if Membership.objects.filter(organization=invitation.organization, user=user).exists():
        raise OrganizationError(f"You are already a member of {invitation.organization}.")
    try:
        with transaction.atomic():
            membership = Membership.objects.create(
                organization=invitation.organization, user=user, role=invitation.role
            )
    except IntegrityError as exc:  # a concurrent accept by the same user
        raise OrganizationError(f"You are already a member of {invitation.organization}.") from exc
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit_record(
        action="member.joined",
        organization=invitation.organization,
        target=membership,
        metadata={"role": invitation.role, "via": "invitation", "invitation_id": invitation.pk},
        actor=user,
    )
    return membership


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, actor_membership: Membership) -> Invitation:
    if actor_membership.organization_id != invitation.organization_id:
        raise OrganizationError("That invitation is not in this organization.")
    locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
    _check_actor_may_touch(actor_membership, locked.role, locked.role)
    if locked.accepted_at is not None:
        raise OrganizationError("This invitation has already been accepted.", code="conflict")
    if locked.revoked_at is not None:
        return locked
    locked.revoked_at = timezone.now()
    locked.save(update_fields=["revoked_at"])
    audit_record(
        action="member.invitation_revoked",
        organization=locked.organization,
        target=locked,
        metadata={"email": locked.email},
        actor=actor_membership.user,
    )
    return locked
