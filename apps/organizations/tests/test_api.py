"""Management API for members, invitations and settings: the dashboard's rules
(owner rules, last-owner protection), the standard error body, tenancy, audit."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from pytest_django import DjangoCaptureOnCommitCallbacks
from rest_framework.test import APIClient

from apps.accounts.models import PersonalAPIToken
from apps.accounts.services import personal_token_mint
from apps.audit.models import AuditEvent
from apps.organizations.models import Invitation, Membership, Organization, OrgRole
from apps.organizations.services import invitation_create

pytestmark = pytest.mark.django_db


def api(user: Any) -> Any:
    client = APIClient()
    client.force_login(user)
    return client


def token_api(user: Any, org: Organization) -> APIClient:
    _token, raw = personal_token_mint(user=user, organization=org, name="automation")
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}")


def membership(org: Organization, user: Any) -> Membership:
    return Membership.objects.get(organization=org, user=user)


def fields_of(response: Any) -> Any:
    body = response.json()
    assert body["error"]["code"] == "invalid_input", body
    return body["error"]["details"]["fields"]


# --- members ------------------------------------------------------------------------


@pytest.mark.usefixtures("org", "owner", "admin")
def test_reviewer_lists_members_paginated(reviewer: User) -> None:
    response = api(reviewer).get("/api/v1/orgs/acme/members/", {"page_size": 2})
    assert response.status_code == 200
    body = response.json()
    assert len(body["results"]) == 2
    assert body["next"]
    rest = api(reviewer).get(body["next"]).json()["results"]
    emails = {m["email"] for m in body["results"] + rest}
    assert emails == {"owner@acme.test", "admin@acme.test", "reviewer@acme.test"}
    assert set(body["results"][0]) == {"id", "user_id", "email", "role", "joined_at"}


@pytest.mark.usefixtures("org")
def test_member_role_is_too_low_to_list_members(member: User) -> None:
    response = api(member).get("/api/v1/orgs/acme/members/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_admin_changes_a_role_with_a_personal_token_and_it_is_audited(
    org: Organization, admin: User, reviewer: User
) -> None:
    target = membership(org, reviewer)
    response = token_api(admin, org).patch(
        f"/api/v1/orgs/acme/members/{target.pk}/", {"role": "admin"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["role"] == "admin"
    target.refresh_from_db()
    assert target.role == OrgRole.ADMIN
    event = AuditEvent.objects.get(action="member.role_changed")
    assert event.metadata == {"from": "reviewer", "to": "admin", "email": "reviewer@acme.test"}
    assert event.actor_id == str(admin.pk)


def test_bad_role_is_a_field_error_and_nothing_changes(
    org: Organization, admin: User, reviewer: User
) -> None:
    target = membership(org, reviewer)
    response = api(admin).patch(
        f"/api/v1/orgs/acme/members/{target.pk}/", {"role": "emperor"}, format="json"
    )
    assert response.status_code == 400
    assert "role" in fields_of(response)
    target.refresh_from_db()
    assert target.role == OrgRole.REVIEWER
    assert not AuditEvent.objects.filter(action="member.role_changed").exists()


def test_only_an_owner_grants_the_owner_role(
    org: Organization, admin: User, reviewer: User
) -> None:
    target = membership(org, reviewer)
    response = api(admin).patch(
        f"/api/v1/orgs/acme/members/{target.pk}/", {"role": "owner"}, format="json"
    )
    assert response.status_code == 403
    assert "owner" in response.json()["error"]["message"]
    target.refresh_from_db()
    assert target.role == OrgRole.REVIEWER


def test_reviewer_cannot_change_roles(org: Organization, reviewer: User, admin: User) -> None:
    target = membership(org, admin)
    response = api(reviewer).patch(
        f"/api/v1/orgs/acme/members/{target.pk}/", {"role": "member"}, format="json"
    )
    assert response.status_code == 403
    target.refresh_from_db()
    assert target.role == OrgRole.ADMIN


def test_the_last_owner_can_be_neither_demoted_nor_removed(org: Organization, owner: User) -> None:
    mine = membership(org, owner)
    demote = api(owner).patch(
        f"/api/v1/orgs/acme/members/{mine.pk}/", {"role": "admin"}, format="json"
    )
    assert demote.status_code == 409
    assert demote.json()["error"]["code"] == "last_owner"
    remove = api(owner).delete(f"/api/v1/orgs/acme/members/{mine.pk}/")
    assert remove.status_code == 409
    assert remove.json()["error"]["code"] == "last_owner"
    mine.refresh_from_db()
    assert mine.role == OrgRole.OWNER
    assert not AuditEvent.objects.filter(action__startswith="member.").exists()


def test_admin_removes_a_member_and_their_personal_tokens_die(
    org: Organization, admin: User, reviewer: User
) -> None:
    target = membership(org, reviewer)
    reviewer_api = token_api(reviewer, org)
    assert reviewer_api.get("/api/v1/orgs/acme/members/").status_code == 200
    response = api(admin).delete(f"/api/v1/orgs/acme/members/{target.pk}/")
    assert response.status_code == 204
    assert not Membership.objects.filter(pk=target.pk).exists()
    assert AuditEvent.objects.filter(action="member.removed").count() == 1
    assert PersonalAPIToken.objects.get(user=reviewer).revoked_at is not None
    assert reviewer_api.get("/api/v1/orgs/acme/members/").status_code == 401


@pytest.mark.usefixtures("org")
def test_another_orgs_member_is_404_inside_my_org(
    admin: User, outsider: User, other_org: Organization
) -> None:
    theirs = membership(other_org, outsider)
    for method in ("get", "patch", "delete"):
        response = getattr(api(admin), method)(
            f"/api/v1/orgs/acme/members/{theirs.pk}/", {"role": "member"}, format="json"
        )
        assert response.status_code == 404, method
    theirs.refresh_from_db()
    assert theirs.role == OrgRole.OWNER


@pytest.mark.usefixtures("org", "admin")
def test_another_org_is_404_for_session_and_token(outsider: User, other_org: Organization) -> None:
    for client in (api(outsider), token_api(outsider, other_org)):
        assert client.get("/api/v1/orgs/acme/members/").status_code == 404
        assert client.get("/api/v1/orgs/acme/settings/").status_code == 404
        response = client.post(
            "/api/v1/orgs/acme/invitations/", {"email": "x@evil.test"}, format="json"
        )
        assert response.status_code == 404
    assert not Invitation.objects.exists()


# --- invitations --------------------------------------------------------------------


@pytest.mark.usefixtures("org")
def test_admin_invites_and_the_link_is_only_in_the_email(
    admin: User, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = api(admin).post(
            "/api/v1/orgs/acme/invitations/",
            {"email": "Bob@Example.com", "role": "reviewer"},
            format="json",
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["email"] == "bob@example.com"
    assert body["role"] == "reviewer"
    assert body["status"] == "pending"
    assert body["invited_by_email"] == "admin@acme.test"
    invitation = Invitation.objects.get()
    (message,) = mail.outbox
    link = next(w for w in message.body.split() if "/invitations/" in w)
    key = link.rstrip("/").rsplit("/", 1)[1]
    assert key not in response.content.decode()
    assert invitation.key_digest not in response.content.decode()
    assert AuditEvent.objects.filter(action="member.invited", target_id=str(invitation.pk))
    listing = api(admin).get("/api/v1/orgs/acme/invitations/").json()["results"]
    assert [i["id"] for i in listing] == [invitation.pk]
    assert key not in str(listing)
    assert "key_digest" not in listing[0]


@pytest.mark.usefixtures("org")
def test_invitation_bad_input_is_400_with_fields_and_nothing_written(admin: User) -> None:
    response = api(admin).post(
        "/api/v1/orgs/acme/invitations/", {"email": "not-an-email", "role": "king"}, format="json"
    )
    assert response.status_code == 400
    assert set(fields_of(response)) == {"email", "role"}
    assert not Invitation.objects.exists()
    assert not AuditEvent.objects.filter(action="member.invited").exists()


@pytest.mark.usefixtures("org", "reviewer")
def test_inviting_an_existing_member_is_a_field_error(admin: User) -> None:
    response = api(admin).post(
        "/api/v1/orgs/acme/invitations/", {"email": "reviewer@acme.test"}, format="json"
    )
    assert response.status_code == 400
    assert "already a member" in fields_of(response)["email"][0]


@pytest.mark.usefixtures("org")
def test_admin_cannot_invite_an_owner_and_reviewer_cannot_invite(
    admin: User, reviewer: User
) -> None:
    response = api(admin).post(
        "/api/v1/orgs/acme/invitations/", {"email": "o@x.test", "role": "owner"}, format="json"
    )
    assert response.status_code == 403
    response = api(reviewer).post(
        "/api/v1/orgs/acme/invitations/", {"email": "m@x.test"}, format="json"
    )
    assert response.status_code == 403
    assert not Invitation.objects.exists()


def test_revoke_an_invitation(org: Organization, owner: User, admin: User) -> None:
    issued = invitation_create(
        organization=org,
        email="carol@x.test",
        role="member",
        actor_membership=membership(org, owner),
    )
    url = f"/api/v1/orgs/acme/invitations/{issued.invitation.pk}/revoke/"
    assert api(admin).post(url).json()["status"] == "revoked"
    assert AuditEvent.objects.filter(action="member.invitation_revoked").count() == 1


@pytest.mark.usefixtures("org")
def test_another_orgs_invitation_is_404(
    admin: User, other_org: Organization, outsider: User
) -> None:
    issued = invitation_create(
        organization=other_org,
        email="dave@x.test",
        role="member",
        actor_membership=membership(other_org, outsider),
    )
    response = api(admin).post(f"/api/v1/orgs/acme/invitations/{issued.invitation.pk}/revoke/")
    assert response.status_code == 404
    issued.invitation.refresh_from_db()
    assert issued.invitation.revoked_at is None


# --- settings -----------------------------------------------------------------------


@pytest.mark.usefixtures("org")
def test_reviewer_reads_settings(reviewer: User) -> None:
    body = api(reviewer).get("/api/v1/orgs/acme/settings/").json()
    assert body == {
        "name": "Acme",
        "slug": "acme",
        "max_token_days": None,
        "store_broker_input": False,
        "require_mfa": False,
        "audit_retention_months": None,
        "created_at": body["created_at"],
    }


def test_admin_patches_settings_and_each_change_is_audited(org: Organization, admin: User) -> None:
    response = token_api(admin, org).patch(
        "/api/v1/orgs/acme/settings/",
        {"max_token_days": 30, "store_broker_input": True},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["max_token_days"] == 30
    org.refresh_from_db()
    assert (org.name, org.max_token_days, org.store_broker_input) == ("Acme", 30, True)
    event = AuditEvent.objects.get(action="org.updated")
    assert event.metadata["changes"] == {
        "max_token_days": {"from": None, "to": 30},
        "store_broker_input": {"from": False, "to": True},
    }
    # The cap now applies to personal tokens too.
    with pytest.raises(Exception, match="between 1 and 30"):
        personal_token_mint(user=admin, organization=org, name="long", expires_in_days=31)


def test_settings_bad_input_is_400_and_nothing_is_half_written(
    org: Organization, admin: User
) -> None:
    response = api(admin).patch(
        "/api/v1/orgs/acme/settings/",
        {"name": "", "max_token_days": 9999, "store_broker_input": True},
        format="json",
    )
    assert response.status_code == 400
    assert {"name", "max_token_days"} <= set(fields_of(response))
    org.refresh_from_db()
    assert (org.name, org.max_token_days, org.store_broker_input) == ("Acme", None, False)
    assert not AuditEvent.objects.filter(action="org.updated").exists()


def test_require_mfa_over_the_api_needs_the_admins_own_second_factor(
    org: Organization, admin: User
) -> None:
    from allauth.mfa.models import Authenticator

    client = token_api(admin, org)
    refused = client.patch("/api/v1/orgs/acme/settings/", {"require_mfa": True}, format="json")
    assert refused.status_code == 400
    assert "second factor" in fields_of(refused)["require_mfa"][0]
    org.refresh_from_db()
    assert org.require_mfa is False
    assert not AuditEvent.objects.filter(action="org.updated").exists()

    Authenticator.objects.create(user=admin, type=Authenticator.Type.TOTP, data={})
    response = client.patch("/api/v1/orgs/acme/settings/", {"require_mfa": True}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["require_mfa"] is True
    org.refresh_from_db()
    assert org.require_mfa is True
    event = AuditEvent.objects.get(action="org.updated")
    assert event.metadata["changes"] == {"require_mfa": {"from": False, "to": True}}


def test_the_slug_and_organization_never_come_from_the_body(
    org: Organization, admin: User, other_org: Organization
) -> None:
    response = api(admin).patch(
        "/api/v1/orgs/acme/settings/", {"slug": "globex", "name": "Acme 2"}, format="json"
    )
    assert response.status_code == 200
    assert Organization.objects.get(pk=org.pk).slug == "acme"
    assert Organization.objects.get(pk=other_org.pk).name == "Globex"


def test_reviewer_cannot_change_settings(org: Organization, reviewer: User) -> None:
    response = api(reviewer).patch(
        "/api/v1/orgs/acme/settings/", {"max_token_days": 1}, format="json"
    )
    assert response.status_code == 403
    org.refresh_from_db()
    assert org.max_token_days is None


def test_reviewer_can_neither_remove_members_nor_withdraw_invitations(
    org: Organization, owner: User, reviewer: User, admin: User
) -> None:
    issued = invitation_create(
        organization=org,
        email="erin@x.test",
        role="member",
        actor_membership=membership(org, owner),
    )
    target = membership(org, admin)
    client = api(reviewer)
    assert (
        client.get(f"/api/v1/orgs/acme/members/{target.pk}/").json()["email"] == "admin@acme.test"
    )
    assert client.delete(f"/api/v1/orgs/acme/members/{target.pk}/").status_code == 403
    revoke = client.post(f"/api/v1/orgs/acme/invitations/{issued.invitation.pk}/revoke/")
    assert revoke.status_code == 403
    assert Membership.objects.filter(pk=target.pk).exists()
    issued.invitation.refresh_from_db()
    assert issued.invitation.revoked_at is None
