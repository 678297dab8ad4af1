from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone
from pytest_django import DjangoCaptureOnCommitCallbacks

from apps.audit.models import AuditEvent
from apps.organizations import services
from apps.organizations.models import Invitation, Membership, Organization, OrgRole
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def membership_of(user: Any, org: Organization) -> Membership:
    return Membership.objects.get(user=user, organization=org)


def actions(org: Organization) -> Any:
    return list(
        AuditEvent.objects.filter(organization=org).order_by("seq").values_list("action", flat=True)
    )


# --- organization_create / organization_update ------------------------------------


def test_organization_create_makes_owner_and_audits() -> None:
    user = UserFactory(email="ada@example.test")
    org = services.organization_create(name="Analytical Engines", owner=user)
    assert org.slug == "analytical-engines"
    assert membership_of(user, org).role == OrgRole.OWNER
    assert actions(org) == ["org.created", "member.joined"]


def test_organization_create_slug_is_unique_and_avoids_reserved_words() -> None:
    user = UserFactory()
    first = services.organization_create(name="Acme", owner=user)
    second = services.organization_create(name="Acme", owner=user)
    reserved = services.organization_create(name="Admin", owner=user)
    assert first.slug == "acme"
    assert second.slug != "acme"
    assert second.slug.startswith("acme-")
    assert reserved.slug == "admin-org"


def test_organization_create_rejects_blank_name_and_writes_nothing() -> None:
    user = UserFactory()
    with pytest.raises(ValidationError) as exc:
        services.organization_create(name="   ", owner=user)
    assert "name" in exc.value.message_dict
    assert not Organization.objects.exists()
    assert not AuditEvent.objects.exists()


def test_organization_update_validates_token_days(org: Organization, owner: User) -> None:
    for bad in (0, 367, -5):
        with pytest.raises(ValidationError) as exc:
            services.organization_update(
                organization=org, actor=owner, name="Acme", max_token_days=bad
            )
        assert "max_token_days" in exc.value.message_dict
    org.refresh_from_db()
    assert org.max_token_days is None
    assert "org.updated" not in actions(org)


def test_organization_update_changes_and_audits(org: Organization, owner: User) -> None:
    services.organization_update(organization=org, actor=owner, name="Acme Inc", max_token_days=30)
    org.refresh_from_db()
    assert (org.name, org.max_token_days) == ("Acme Inc", 30)
    event = AuditEvent.objects.get(organization=org, action="org.updated")
    assert event.metadata["changes"]["max_token_days"] == {"from": None, "to": 30}
    assert event.actor_id == str(owner.pk)


# --- membership_change_role / membership_remove ----------------------------------


def test_last_owner_cannot_be_demoted_or_removed(org: Organization, owner: User) -> None:
    me = membership_of(owner, org)
    with pytest.raises(ValidationError, match="last owner"):
        services.membership_change_role(membership=me, role=OrgRole.ADMIN, actor_membership=me)
    with pytest.raises(ValidationError, match="last owner"):
        services.membership_remove(membership=me, actor_membership=me)
    me.refresh_from_db()
    assert me.role == OrgRole.OWNER
    assert actions(org) == []


def test_owner_can_be_demoted_when_another_owner_exists(org: Organization, owner: User) -> None:
    second = MembershipFactory(organization=org, role=OrgRole.OWNER)
    me = membership_of(owner, org)
    services.membership_change_role(membership=me, role=OrgRole.ADMIN, actor_membership=second)
    me.refresh_from_db()
    assert me.role == OrgRole.ADMIN
    event = AuditEvent.objects.get(organization=org, action="member.role_changed")
    assert event.metadata == {"from": "owner", "to": "admin", "email": owner.email}
    # Now `second` is the last owner.
    with pytest.raises(ValidationError, match="last owner"):
        services.membership_remove(membership=second, actor_membership=second)


def test_admin_cannot_grant_or_take_owner_role(
    org: Organization, owner: User, admin: User, member: User
) -> None:
    admin_m = membership_of(admin, org)
    with pytest.raises(ValidationError, match="Only an owner"):
        services.membership_change_role(
            membership=membership_of(member, org), role=OrgRole.OWNER, actor_membership=admin_m
        )
    MembershipFactory(organization=org, role=OrgRole.OWNER)
    with pytest.raises(ValidationError, match="Only an owner"):
        services.membership_change_role(
            membership=membership_of(owner, org), role=OrgRole.MEMBER, actor_membership=admin_m
        )
    with pytest.raises(ValidationError, match="Only an owner"):
        services.membership_remove(membership=membership_of(owner, org), actor_membership=admin_m)
    assert membership_of(member, org).role == OrgRole.MEMBER
    assert membership_of(owner, org).role == OrgRole.OWNER


@pytest.mark.usefixtures("owner")
def test_admin_changes_and_removes_members(
    org: Organization, admin: User, member: User, reviewer: User
) -> None:
    admin_m = membership_of(admin, org)
    services.membership_change_role(
        membership=membership_of(member, org), role=OrgRole.REVIEWER, actor_membership=admin_m
    )
    assert membership_of(member, org).role == OrgRole.REVIEWER
    services.membership_remove(membership=membership_of(reviewer, org), actor_membership=admin_m)
    assert not Membership.objects.filter(user=reviewer, organization=org).exists()
    assert actions(org) == ["member.role_changed", "member.removed"]


@pytest.mark.usefixtures("owner")
def test_reviewer_cannot_manage_members(org: Organization, reviewer: User, member: User) -> None:
    rev = membership_of(reviewer, org)
    with pytest.raises(ValidationError, match="Only admins and owners"):
        services.membership_change_role(
            membership=membership_of(member, org), role=OrgRole.ADMIN, actor_membership=rev
        )
    with pytest.raises(ValidationError, match="Only admins and owners"):
        services.membership_remove(membership=membership_of(member, org), actor_membership=rev)


def test_unknown_role_is_rejected(org: Organization, owner: User, member: User) -> None:
    with pytest.raises(ValidationError) as exc:
        services.membership_change_role(
            membership=membership_of(member, org),
            role="superuser",
            actor_membership=membership_of(owner, org),
        )
    assert "role" in exc.value.message_dict


def test_cannot_act_on_another_orgs_member(
    org: Organization, owner: User, other_org: Organization, outsider: User
) -> None:
    with pytest.raises(ValidationError, match="not in this organization"):
        services.membership_remove(
            membership=membership_of(owner, org),
            actor_membership=membership_of(outsider, other_org),
        )
    assert Membership.objects.filter(user=owner, organization=org).exists()


def test_audit_failure_rolls_back_the_change(
    org: Organization, owner: User, member: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the audit event cannot be written, the role change does not happen."""

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("audit store down")

    monkeypatch.setattr(services, "audit_record", broken)
    with pytest.raises(RuntimeError):
        services.membership_change_role(
            membership=membership_of(member, org),
            role=OrgRole.ADMIN,
            actor_membership=membership_of(owner, org),
        )
    assert membership_of(member, org).role == OrgRole.MEMBER


# --- invitations -----------------------------------------------------------------


def invite(
    org: Organization,
    owner: User,
    email: str = "new@example.test",
    role: Any = OrgRole.REVIEWER,
    **kwargs: Any,
) -> Any:
    return services.invitation_create(
        organization=org, email=email, role=role, actor_membership=membership_of(owner, org)
    )


@pytest.fixture
def sent(
    org: Organization,
    owner: User,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> Any:
    with django_capture_on_commit_callbacks(execute=True):
        return invite(org, owner, email="New@Example.test")


def test_invitation_create_stores_only_a_digest_and_emails_the_link(
    org: Organization, sent: Any
) -> None:
    inv = Invitation.objects.get(pk=sent.invitation.pk)
    assert inv.email == "new@example.test"
    assert inv.key_digest == services.invitation_key_digest(sent.key)
    assert sent.key not in inv.key_digest
    assert timedelta(days=6, hours=23) < inv.expires_at - timezone.now() <= timedelta(days=7)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["new@example.test"]
    assert f"/invitations/{sent.key}/" in mail.outbox[0].body
    assert sent.key not in repr(sent)
    assert actions(org) == ["member.invited"]


def test_invitation_email_is_not_sent_when_the_transaction_fails(
    org: Organization, owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**_kwargs: Any) -> None:
        raise OSError("audit store down")

    monkeypatch.setattr(services, "audit_record", broken)
    with pytest.raises(OSError, match="audit store down"):
        invite(org, owner)
    assert not Invitation.objects.exists()
    assert mail.outbox == []


def test_invitation_create_bad_input(org: Organization, owner: User, member: User) -> None:
    with pytest.raises(ValidationError) as exc:
        invite(org, owner, email="not-an-email", role="emperor")
    assert set(exc.value.message_dict) == {"email", "role"}
    with pytest.raises(ValidationError, match="already a member"):
        invite(org, owner, email=member.email.upper())
    assert not Invitation.objects.exists()


def test_only_owner_may_invite_an_owner(org: Organization, owner: User, admin: User) -> None:
    with pytest.raises(ValidationError, match="Only an owner"):
        invite(org, admin, role=OrgRole.OWNER)
    assert invite(org, owner, role=OrgRole.OWNER).invitation.role == OrgRole.OWNER


def test_invitation_accept_joins_with_role_once(org: Organization, sent: Any) -> None:
    user = UserFactory(email="new@example.test")
    membership = services.invitation_accept(key=sent.key, user=user)
    assert (membership.organization, membership.role) == (org, OrgRole.REVIEWER)
    inv = Invitation.objects.get(pk=sent.invitation.pk)
    assert inv.accepted_by == user
    assert inv.accepted_at is not None
    assert actions(org)[-1] == "member.joined"
    # Single use: the same link cannot be used again, by anyone.
    with pytest.raises(ValidationError, match="already been used"):
        services.invitation_accept(key=sent.key, user=user)


@pytest.mark.usefixtures("org")
def test_invitation_accept_rejects_wrong_email(sent: Any) -> None:
    stranger = UserFactory(email="stranger@example.test")
    with pytest.raises(ValidationError, match=re.escape("new@example.test")):
        services.invitation_accept(key=sent.key, user=stranger)
    assert not Membership.objects.filter(user=stranger).exists()
    assert Invitation.objects.get(pk=sent.invitation.pk).accepted_at is None


@pytest.mark.usefixtures("org")
def test_invitation_accept_needs_a_verified_address(sent: Any) -> None:
    unverified = UserFactory(email="new@example.test", verified=False)
    with pytest.raises(ValidationError, match="verified"):
        services.invitation_accept(key=sent.key, user=unverified)
    assert not Membership.objects.filter(user=unverified).exists()


@pytest.mark.usefixtures("org")
def test_invitation_expired(sent: Any) -> None:
    Invitation.objects.filter(pk=sent.invitation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    user = UserFactory(email="new@example.test")
    with pytest.raises(ValidationError, match="expired"):
        services.invitation_accept(key=sent.key, user=user)
    assert not Membership.objects.filter(user=user).exists()


def test_invitation_revoked(org: Organization, owner: User, sent: Any) -> None:
    services.invitation_revoke(
        invitation=sent.invitation, actor_membership=membership_of(owner, org)
    )
    user = UserFactory(email="new@example.test")
    with pytest.raises(ValidationError, match="withdrawn"):
        services.invitation_accept(key=sent.key, user=user)
    assert not Membership.objects.filter(user=user).exists()
    assert actions(org)[-1] == "member.invitation_revoked"


@pytest.mark.usefixtures("db")
def test_invitation_unknown_key() -> None:
    user = UserFactory()
    with pytest.raises(ValidationError, match="not valid"):
        services.invitation_accept(key="nope", user=user)


@pytest.mark.usefixtures("owner")
def test_invitation_revoke_needs_admin_of_same_org(
    org: Organization, sent: Any, reviewer: User, outsider: User, other_org: Organization
) -> None:
    with pytest.raises(ValidationError, match="Only admins"):
        services.invitation_revoke(
            invitation=sent.invitation, actor_membership=membership_of(reviewer, org)
        )
    with pytest.raises(ValidationError, match="not in this organization"):
        services.invitation_revoke(
            invitation=sent.invitation, actor_membership=membership_of(outsider, other_org)
        )
    assert Invitation.objects.get(pk=sent.invitation.pk).revoked_at is None


def test_inviting_again_replaces_the_earlier_link(org: Organization, owner: User) -> None:
    first = invite(org, owner, email="twice@example.test")
    second = invite(org, owner, email="Twice@example.test")
    user = UserFactory(email="twice@example.test")
    with pytest.raises(ValidationError, match="withdrawn"):
        services.invitation_accept(key=first.key, user=user)
    assert services.invitation_accept(key=second.key, user=user).organization == org
    event = AuditEvent.objects.filter(action="member.invited").order_by("-seq").first()
    assert event.metadata["replaced_invitations"] == [first.invitation.pk]


def test_admin_cannot_replace_an_owner_invitation(
    org: Organization, owner: User, admin: User
) -> None:
    first = invite(org, owner, email="boss@example.test", role=OrgRole.OWNER)
    with pytest.raises(ValidationError, match="Only an owner"):
        invite(org, admin, email="boss@example.test", role=OrgRole.MEMBER)
    assert Invitation.objects.get(pk=first.invitation.pk).revoked_at is None


def test_removing_a_member_revokes_their_personal_tokens_for_that_org(
    org: Organization, other_org: Organization, owner: User, admin: User, member: User
) -> None:
    from rest_framework.test import APIClient

    from apps.accounts.models import PersonalAPIToken
    from apps.accounts.services import personal_token_mint

    token, raw = personal_token_mint(user=member, organization=org, name="ci")
    other = personal_token_mint(user=admin, organization=org, name="admin-ci")[0]
    MembershipFactory(organization=other_org, user=member, role=OrgRole.MEMBER)
    elsewhere = personal_token_mint(user=member, organization=other_org, name="globex")[0]

    services.membership_remove(
        membership=membership_of(member, org), actor_membership=membership_of(owner, org)
    )

    token.refresh_from_db()
    assert token.revoked_at is not None
    revoked = AuditEvent.objects.get(action="personal_token.revoked")
    assert revoked.organization_id == org.pk
    assert revoked.target_id == token.public_id
    assert revoked.actor_id == str(owner.pk)
    assert actions(org)[-2:] == ["member.removed", "personal_token.revoked"]
    # Other members' tokens and the member's tokens for other organizations are untouched.
    assert PersonalAPIToken.objects.get(pk=other.pk).revoked_at is None
    assert PersonalAPIToken.objects.get(pk=elsewhere.pk).revoked_at is None

    # Re-invited later, the old token still does not work.
    MembershipFactory(organization=org, user=member, role=OrgRole.MEMBER)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get(f"/api/v1/orgs/{org.slug}/workers/").status_code == 401


def test_member_removal_revokes_nothing_if_it_is_refused(org: Organization, owner: User) -> None:
    from apps.accounts.models import PersonalAPIToken
    from apps.accounts.services import personal_token_mint

    token, _ = personal_token_mint(user=owner, organization=org, name="ci")
    with pytest.raises(ValidationError):
        services.membership_remove(
            membership=membership_of(owner, org), actor_membership=membership_of(owner, org)
        )
    assert PersonalAPIToken.objects.get(pk=token.pk).revoked_at is None
    assert not AuditEvent.objects.filter(action="personal_token.revoked").exists()
