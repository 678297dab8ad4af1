"""Sign-up creates the user's organization (or joins an invitation's), and
account events land in the audit trail of every org the person belongs to."""

from __future__ import annotations

import re
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.organizations import services
from apps.organizations.models import Membership, Organization, OrgRole
from tests.factories import PASSWORD, MembershipFactory, OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "plenty-long-passphrase-7"


def signup(client: Any, email: Any, org_name: str = "") -> Any:
    return client.post(
        reverse("account_signup"),
        {
            "email": email,
            "organization_name": org_name,
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
        },
    )


def confirm_from_outbox(client: Any) -> Any:
    body = mail.outbox[-1].body
    match = re.search(r"https?://[^/\s]+(/accounts/confirm-email/[^/\s]+/)", str(body))
    assert match, body
    return client.post(match.group(1))


def test_signup_creates_org_with_owner_and_audits(client: Client) -> None:
    response = signup(client, "grace@navy.test", "Compilers Ltd")
    assert response.status_code == 302
    org = Organization.objects.get(name="Compilers Ltd")
    membership = Membership.objects.get(organization=org)
    assert membership.user.email == "grace@navy.test"
    assert membership.role == OrgRole.OWNER
    actions = set(AuditEvent.objects.filter(organization=org).values_list("action", flat=True))
    assert {"org.created", "member.joined"} <= actions

    # Verification is mandatory: confirming logs in and lands in the new org.
    response = confirm_from_outbox(client)
    assert response.status_code == 302
    response = client.get(response.url, follow=True)
    assert response.request["PATH_INFO"] == f"/o/{org.slug}/"


def test_signup_without_org_name_derives_it_from_the_domain(client: Client) -> None:
    signup(client, "linus@kernel-hackers.test")
    assert Organization.objects.get().name == "Kernel Hackers"


def test_signup_with_bad_input_writes_nothing(client: Client) -> None:
    response = client.post(
        reverse("account_signup"),
        {"email": "x@y.test", "organization_name": "A" * 200, "password1": "a", "password2": "b"},
    )
    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert not Organization.objects.exists()
    assert not AuditEvent.objects.filter(action="org.created").exists()


def test_signup_through_invitation_joins_the_inviting_org(
    client: Client, org: Organization, owner: User
) -> None:
    issued = services.invitation_create(
        organization=org,
        email="invitee@example.test",
        role=OrgRole.REVIEWER,
        actor_membership=Membership.objects.get(user=owner),
    )
    page = client.get(reverse("invitations:accept", kwargs={"key": issued.key}))
    assert page.status_code == 200
    assert "Acme" in page.content.decode()

    signup_page = client.get(reverse("account_signup"))
    assert "You are joining" in signup_page.content.decode()
    signup(client, "invitee@example.test")
    assert Organization.objects.count() == 1  # no org of their own

    response = confirm_from_outbox(client)
    # Back to the invitation to accept it.
    assert response.url == reverse("invitations:accept", kwargs={"key": issued.key})
    response = client.post(response.url)
    assert response.status_code == 302
    membership = Membership.objects.get(user__email="invitee@example.test")
    assert (membership.organization, membership.role) == (org, OrgRole.REVIEWER)


def test_signup_with_another_email_than_invited_creates_own_org(
    client: Client, org: Organization, owner: User
) -> None:
    issued = services.invitation_create(
        organization=org,
        email="invitee@example.test",
        role=OrgRole.MEMBER,
        actor_membership=Membership.objects.get(user=owner),
    )
    client.get(reverse("invitations:accept", kwargs={"key": issued.key}))
    signup(client, "someone-else@other.test", "Other Co")
    assert Organization.objects.filter(name="Other Co").exists()
    assert not Membership.objects.filter(organization=org, user__email="someone-else@other.test")


def test_login_logout_are_audited_in_every_org_of_the_user(client: Client) -> None:
    user = UserFactory(email="multi@example.test")
    orgs = [OrganizationFactory(), OrganizationFactory()]
    for o in orgs:
        MembershipFactory(user=user, organization=o)
    response = client.post(reverse("account_login"), {"login": user.email, "password": PASSWORD})
    assert response.status_code == 302
    client.post(reverse("account_logout"))
    for o in orgs:
        actions = list(
            AuditEvent.objects.filter(organization=o)
            .order_by("seq")
            .values_list("action", flat=True)
        )
        assert actions == ["auth.login", "auth.logout"]
    login_event = AuditEvent.objects.filter(action="auth.login").first()
    assert login_event.actor_id == str(user.pk)
    assert login_event.ip == "127.0.0.1"


def test_failed_login_records_email_never_password(
    client: Client, org: Organization, owner: User
) -> None:
    wrong = "definitely-not-the-password"
    response = client.post(reverse("account_login"), {"login": owner.email, "password": wrong})
    assert response.status_code == 200
    event = AuditEvent.objects.get(action="auth.login_failed")
    assert event.organization_id == org.pk
    assert event.metadata == {"email": owner.email}
    assert event.outcome == "failure"

    client.post(reverse("account_login"), {"login": "ghost@nowhere.test", "password": wrong})
    ghost = AuditEvent.objects.get(action="auth.login_failed", organization__isnull=True)
    assert ghost.metadata == {"email": "ghost@nowhere.test"}
    for e in AuditEvent.objects.filter(action="auth.login_failed"):
        assert wrong not in str(e.metadata) + e.target_label + e.actor_label + e.reason


def test_password_change_is_audited(client: Client, org: Organization, owner: User) -> None:
    client.post(reverse("account_login"), {"login": owner.email, "password": PASSWORD})
    response = client.post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    if response.status_code == 302 and "reauthenticate" in response["Location"]:
        client.post(response["Location"], {"password": PASSWORD})
        response = client.post(
            reverse("account_change_password"),
            {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        )
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="auth.password_changed", organization=org).exists()


def test_email_added_and_removed_are_audited(
    client: Client, org: Organization, owner: User
) -> None:
    client.post(reverse("account_login"), {"login": owner.email, "password": PASSWORD})
    url = reverse("account_email")
    response = client.post(url, {"action_add": "", "email": "second@acme.test"})
    if response.status_code == 302 and "reauthenticate" in response["Location"]:
        # allauth replays the add once the password is confirmed.
        client.post(response["Location"], {"password": PASSWORD})
    assert EmailAddress.objects.filter(user=owner, email="second@acme.test").exists()
    client.post(url, {"action_remove": "", "email": "second@acme.test"})
    assert not EmailAddress.objects.filter(user=owner, email="second@acme.test").exists()
    actions = list(
        AuditEvent.objects.filter(organization=org, action__startswith="auth.email_")
        .order_by("seq")
        .values_list("action", "metadata")
    )
    assert actions == [
        ("auth.email_added", {"email": "second@acme.test"}),
        ("auth.email_removed", {"email": "second@acme.test"}),
    ]
