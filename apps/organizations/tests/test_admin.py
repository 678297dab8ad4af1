from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.organizations import services
from apps.organizations.models import Invitation, Membership, Organization
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client: Client) -> Any:
    client.force_login(UserFactory(email="staff@grantry.test", is_staff=True, is_superuser=True))
    return client


def test_org_membership_invitation_lists(staff_client: Any, org: Organization, owner: User) -> None:
    services.invitation_create(
        organization=org,
        email="inv@example.test",
        role="member",
        actor_membership=Membership.objects.get(user=owner),
    )
    for name in ("organization", "membership", "invitation"):
        response = staff_client.get(reverse(f"admin:organizations_{name}_changelist"))
        assert response.status_code == 200, name
    html = staff_client.get(reverse("admin:organizations_organization_changelist")).content
    assert b"acme" in html


def test_invitation_admin_never_shows_the_key_digest(
    staff_client: Any, org: Organization, owner: User
) -> None:
    issued = services.invitation_create(
        organization=org,
        email="inv@example.test",
        role="member",
        actor_membership=Membership.objects.get(user=owner),
    )
    digest = Invitation.objects.get().key_digest
    url = reverse("admin:organizations_invitation_change", args=[issued.invitation.pk])
    html = staff_client.get(url).content.decode()
    assert "inv@example.test" in html
    assert digest not in html
    assert issued.key not in html
    assert "key_digest" not in html
    add = staff_client.get(reverse("admin:organizations_invitation_add"))
    assert add.status_code == 403


def test_audit_admin_is_read_only(staff_client: Any, org: Organization) -> None:
    event = audit_record(action="member.invited", organization=org, metadata={"email": "x@y.z"})
    model_admin = admin.site._registry[AuditEvent]
    assert model_admin.actions is None
    changelist = staff_client.get(
        reverse("admin:audit_auditevent_changelist"), {"action": "member.invited"}
    )
    assert changelist.status_code == 200
    assert b"member.invited" in changelist.content
    assert b'<select name="action"' not in changelist.content  # no bulk actions
    detail = staff_client.get(reverse("admin:audit_auditevent_change", args=[event.pk]))
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content
    assert staff_client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    delete = staff_client.post(
        reverse("admin:audit_auditevent_delete", args=[event.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403
    change = staff_client.post(
        reverse("admin:audit_auditevent_change", args=[event.pk]), {"action": "tampered"}
    )
    assert change.status_code == 403
    event.refresh_from_db()
    assert event.action == "member.invited"
    assert AuditEvent.objects.count() == 1


@pytest.mark.usefixtures("owner")
def test_staff_edits_in_admin_are_audited(
    staff_client: Any, org: Organization, member: User
) -> None:
    membership = Membership.objects.get(user=member)
    url = reverse("admin:organizations_membership_change", args=[membership.pk])
    response = staff_client.post(url, {"user": member.pk, "organization": org.pk, "role": "admin"})
    assert response.status_code == 302, response.content.decode()[:3000]
    membership.refresh_from_db()
    assert membership.role == "admin"
    event = AuditEvent.objects.get(action="admin.membership.changed")
    assert event.organization_id == org.pk
    assert event.metadata == {"changed_fields": ["role"], "via": "django-admin"}
    assert event.actor_label == "staff@grantry.test"

    delete_url = reverse("admin:organizations_membership_delete", args=[membership.pk])
    assert staff_client.post(delete_url, {"post": "yes"}).status_code == 302
    assert AuditEvent.objects.filter(action="admin.membership.deleted").count() == 1
