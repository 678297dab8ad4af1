from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.audit.services import audit_record
from apps.connections.models import Connection, ConnectionStatus
from apps.organizations.models import Organization


@pytest.fixture
def needs_reauth(org: Organization) -> Connection:
    return Connection.objects.create(
        organization=org,
        provider_key="sandbox",
        name="stale",
        auth_type="oauth2",
        status=ConnectionStatus.NEEDS_REAUTH,
    )


@pytest.mark.django_db
@pytest.mark.usefixtures("needs_reauth")
def test_overview_shows_inventory_attention_and_latest_events(
    client: Client, owner: User, org: Organization
) -> None:
    audit_record(action="role.created", organization=org, target_label="triage-role")
    client.force_login(owner)
    response = client.get(f"/o/{org.slug}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "1 connection(s) need to be reconnected" in page
    assert "triage-role" in page
    assert "Latest events" in page


@pytest.mark.django_db
def test_overview_hides_the_trail_from_plain_members(
    client: Client, member: User, org: Organization
) -> None:
    audit_record(action="role.created", organization=org, target_label="triage-role")
    client.force_login(member)
    page = client.get(f"/o/{org.slug}/").content.decode()
    assert "triage-role" not in page
    assert "Latest events" not in page


@pytest.mark.django_db
def test_overview_counts_only_this_organization(
    client: Client, owner: User, org: Organization, other_org: Organization
) -> None:
    Connection.objects.create(
        organization=other_org,
        provider_key="sandbox",
        name="theirs",
        auth_type="oauth2",
        status=ConnectionStatus.NEEDS_REAUTH,
    )
    client.force_login(owner)
    page = client.get(f"/o/{org.slug}/").content.decode()
    assert "need to be reconnected" not in page
