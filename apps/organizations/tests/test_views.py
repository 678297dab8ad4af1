from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from django.urls import reverse
from pytest_django import DjangoCaptureOnCommitCallbacks

from apps.audit.models import AuditEvent
from apps.organizations import services
from apps.organizations.models import Invitation, Membership, Organization, OrgRole
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def m(user: Any, org: Organization) -> Membership:
    return Membership.objects.get(user=user, organization=org)


def members_url(org: Organization) -> Any:
    return reverse("orgs:members", kwargs={"org_slug": org.slug})


def role_url(org: Organization, membership: Any) -> Any:
    return reverse(
        "orgs:member_role", kwargs={"org_slug": org.slug, "membership_id": membership.pk}
    )


def remove_url(org: Organization, membership: Any) -> Any:
    return reverse(
        "orgs:member_remove", kwargs={"org_slug": org.slug, "membership_id": membership.pk}
    )


# --- Members page ------------------------------------------------------------


def test_admin_sees_members_invitations_and_management_forms(
    client: Client, org: Organization, owner: User, admin: User, member: User
) -> None:
    services.invitation_create(
        organization=org,
        email="pending@example.test",
        role="member",
        actor_membership=m(owner, org),
    )
    client.force_login(admin)
    html = client.get(members_url(org)).content.decode()
    for email in (owner.email, admin.email, member.email, "pending@example.test"):
        assert email in html
    assert "Send invitation" in html
    assert role_url(org, m(member, org)) in html
    assert "Withdraw" in html
    # An admin is not offered the owner role, and cannot touch the owner row.
    assert 'value="owner"' not in html
    assert role_url(org, m(owner, org)) not in html


@pytest.mark.parametrize("role_fixture", ["reviewer", "member"])
def test_reviewers_and_members_see_the_list_read_only(
    request: pytest.FixtureRequest,
    client: Client,
    org: Organization,
    owner: User,
    role_fixture: str,
) -> None:
    user = request.getfixturevalue(role_fixture)
    client.force_login(user)
    response = client.get(members_url(org))
    assert response.status_code == 200
    html = response.content.decode()
    assert owner.email in html
    assert "<form" not in html.split('<main id="main"')[1].split("</main>")[0]
    assert "Send invitation" not in html


@pytest.mark.parametrize("role_fixture", ["reviewer", "member"])
@pytest.mark.usefixtures("owner")
def test_reviewer_and_member_posts_get_403(
    request: pytest.FixtureRequest,
    client: Client,
    org: Organization,
    admin: User,
    role_fixture: str,
) -> None:
    user = request.getfixturevalue(role_fixture)
    client.force_login(user)
    target = m(admin, org)
    assert (
        client.post(members_url(org), {"email": "x@example.test", "role": "member"}).status_code
        == 403
    )
    assert client.post(role_url(org, target), {"role": "member"}).status_code == 403
    assert client.post(remove_url(org, target)).status_code == 403
    assert (
        client.post(
            reverse("orgs:settings", kwargs={"org_slug": org.slug}), {"name": "X"}
        ).status_code
        == 403
    )
    assert m(admin, org).role == OrgRole.ADMIN
    assert not Invitation.objects.exists()


def test_invite_by_form_sends_email(
    client: Client,
    org: Organization,
    owner: User,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            members_url(org), {"email": "Friend@Example.test", "role": "reviewer"}
        )
    assert response.status_code == 302
    inv = Invitation.objects.get()
    assert (inv.email, inv.role, inv.organization) == ("friend@example.test", "reviewer", org)
    assert len(mail.outbox) == 1
    assert "/invitations/" in mail.outbox[0].body


def test_invite_bad_input_shows_field_errors(
    client: Client, org: Organization, owner: User, member: User
) -> None:
    client.force_login(owner)
    response = client.post(members_url(org), {"email": "nope", "role": "emperor"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Enter a valid email address." in html
    assert "Select a valid choice" in html
    response = client.post(members_url(org), {"email": member.email, "role": "member"})
    assert response.status_code == 400
    assert "already a member" in response.content.decode()
    assert not Invitation.objects.exists()


@pytest.mark.usefixtures("owner")
def test_admin_cannot_invite_an_owner_by_forging_the_form(
    client: Client, org: Organization, admin: User
) -> None:
    client.force_login(admin)
    response = client.post(members_url(org), {"email": "boss@example.test", "role": "owner"})
    assert response.status_code == 400
    assert not Invitation.objects.exists()


@pytest.mark.usefixtures("outsider")
def test_organization_never_comes_from_the_form(
    client: Client, org: Organization, owner: User, other_org: Organization
) -> None:
    client.force_login(owner)
    client.post(
        members_url(org),
        {
            "email": "a@example.test",
            "role": "member",
            "organization": other_org.pk,
            "organization_id": other_org.pk,
            "org_slug": other_org.slug,
        },
    )
    assert Invitation.objects.get().organization == org


def test_role_change_and_remove_via_pages(
    client: Client, org: Organization, owner: User, member: User, reviewer: User
) -> None:
    client.force_login(owner)
    response = client.post(role_url(org, m(member, org)), {"role": "admin"})
    assert response.status_code == 302
    assert m(member, org).role == OrgRole.ADMIN
    response = client.post(remove_url(org, m(reviewer, org)), {"confirmed": "yes"})
    assert response.status_code == 302
    assert not Membership.objects.filter(user=reviewer, organization=org).exists()


def test_last_owner_protection_via_page_shows_message(
    client: Client, org: Organization, owner: User
) -> None:
    client.force_login(owner)
    response = client.post(role_url(org, m(owner, org)), {"role": "member"}, follow=True)
    assert "last owner" in response.content.decode()
    response = client.post(remove_url(org, m(owner, org)), {"confirmed": "yes"}, follow=True)
    assert "last owner" in response.content.decode()
    assert m(owner, org).role == OrgRole.OWNER


def test_member_ids_of_another_org_are_404(
    client: Client, org: Organization, owner: User, other_org: Organization, outsider: User
) -> None:
    client.force_login(owner)
    theirs = m(outsider, other_org)
    assert client.post(role_url(org, theirs), {"role": "member"}).status_code == 404
    assert client.post(remove_url(org, theirs)).status_code == 404
    assert m(outsider, other_org).role == OrgRole.OWNER


def test_revoke_invitation_via_page(client: Client, org: Organization, owner: User) -> None:
    issued = services.invitation_create(
        organization=org, email="p@example.test", role="member", actor_membership=m(owner, org)
    )
    client.force_login(owner)
    url = reverse(
        "orgs:invitation_revoke",
        kwargs={"org_slug": org.slug, "invitation_id": issued.invitation.pk},
    )
    assert client.post(url).status_code == 302
    assert Invitation.objects.get().revoked_at is not None


# --- Settings page -----------------------------------------------------------


def settings_url(org: Organization) -> Any:
    return reverse("orgs:settings", kwargs={"org_slug": org.slug})


def test_settings_update(client: Client, org: Organization, admin: User) -> None:
    client.force_login(admin)
    response = client.post(settings_url(org), {"name": "Acme Corp", "max_token_days": "90"})
    assert response.status_code == 302
    org.refresh_from_db()
    assert (org.name, org.max_token_days) == ("Acme Corp", 90)
    assert AuditEvent.objects.filter(organization=org, action="org.updated").exists()


def test_settings_bad_input(client: Client, org: Organization, admin: User) -> None:
    client.force_login(admin)
    response = client.post(settings_url(org), {"name": "", "max_token_days": "400"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "This field is required." in html
    assert "less than or equal to 366" in html
    org.refresh_from_db()
    assert org.name == "Acme"
    assert org.max_token_days is None


def test_settings_read_only_for_reviewer(client: Client, org: Organization, reviewer: User) -> None:
    client.force_login(reviewer)
    html = client.get(settings_url(org)).content.decode()
    assert "Only admins and owners" in html
    assert "Save settings" not in html


def test_sidebar_links_members_and_settings(client: Client, org: Organization, owner: User) -> None:
    client.force_login(owner)
    html = client.get(reverse("orgs:overview", kwargs={"org_slug": org.slug})).content.decode()
    assert members_url(org) in html
    assert settings_url(org) in html


# --- Invitation link -----------------------------------------------------------


def test_invitation_page_states(client: Client, org: Organization, owner: User) -> None:
    issued = services.invitation_create(
        organization=org, email="new@example.test", role="reviewer", actor_membership=m(owner, org)
    )
    url = reverse("invitations:accept", kwargs={"key": issued.key})
    assert client.get(reverse("invitations:accept", kwargs={"key": "bogus"})).status_code == 404
    assert "Join Acme" in client.get(url).content.decode()

    # Logged in with the wrong address: clear error, nothing joined.
    stranger = UserFactory(email="stranger@example.test")
    client.force_login(stranger)
    response = client.post(url)
    assert response.status_code == 400
    assert "new@example.test" in response.content.decode()
    assert not Membership.objects.filter(user=stranger, organization=org).exists()

    invitee = UserFactory(email="new@example.test")
    client.force_login(invitee)
    response = client.post(url)
    assert response.status_code == 302
    assert m(invitee, org).role == OrgRole.REVIEWER
    # Used: the link now says so.
    response = client.get(url)
    assert response.status_code == 410
    assert "already been used" in response.content.decode()


def test_anonymous_post_to_invitation_redirects_to_login(
    client: Client, org: Organization, owner: User
) -> None:
    issued = services.invitation_create(
        organization=org, email="new@example.test", role="member", actor_membership=m(owner, org)
    )
    response = client.post(reverse("invitations:accept", kwargs={"key": issued.key}))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))
    assert not Membership.objects.filter(user__email="new@example.test").exists()


def test_existing_user_logs_in_from_the_invitation_and_comes_back_to_accept(
    client: Client, org: Organization, owner: User
) -> None:
    from tests.factories import PASSWORD

    existing = UserFactory(email="existing@example.test")
    issued = services.invitation_create(
        organization=org, email=existing.email, role="admin", actor_membership=m(owner, org)
    )
    url = reverse("invitations:accept", kwargs={"key": issued.key})
    assert "Log in to accept" in client.get(url).content.decode()
    response = client.post(
        reverse("account_login"), {"login": existing.email, "password": PASSWORD}
    )
    assert response.status_code == 302
    assert response["Location"] == url
    assert client.post(url).status_code == 302
    assert m(existing, org).role == OrgRole.ADMIN
