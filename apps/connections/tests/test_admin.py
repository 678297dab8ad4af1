"""Django admin for custody models is read-only: staff can inspect metadata, but
cannot add, change (e.g. move a connection to another organization) or delete."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.connections.models import Connection, ProviderApp
from apps.organizations.models import Organization
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SECRET = "sk-live-admin-must-not-show-this"


@pytest.fixture
def staff_client(client: Client) -> Any:
    client.force_login(UserFactory(email="root@grantry.test", is_staff=True, is_superuser=True))
    return client


def test_connection_admin_cannot_add_change_or_move(
    staff_client: Any, org: Organization, other_org: Organization
) -> None:
    connection = Connection.objects.create(
        organization=org, provider_key="github", name="gh", auth_type="api_key", api_key=SECRET
    )
    change_url = reverse("admin:connections_connection_change", args=[connection.pk])

    page = staff_client.get(change_url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "gh" in html
    assert "•••• set" in html
    assert SECRET not in html
    assert 'name="organization"' not in html

    moved = staff_client.post(
        change_url,
        {
            "organization": other_org.pk,
            "provider_key": "github",
            "name": "gh",
            "auth_type": "api_key",
            "status": "active",
        },
    )
    assert moved.status_code == 403
    connection.refresh_from_db()
    assert connection.organization_id == org.pk

    added = staff_client.post(
        reverse("admin:connections_connection_add"),
        {"organization": other_org.pk, "provider_key": "github", "name": "new"},
    )
    assert added.status_code == 403
    deleted = staff_client.post(
        reverse("admin:connections_connection_delete", args=[connection.pk]), {"post": "yes"}
    )
    assert deleted.status_code == 403
    assert Connection.objects.count() == 1


def test_provider_app_admin_cannot_add_or_change(
    staff_client: Any, org: Organization, other_org: Organization
) -> None:
    app = ProviderApp.objects.create(
        organization=org, provider_key="github", client_id="cid", client_secret=SECRET
    )
    change_url = reverse("admin:connections_providerapp_change", args=[app.pk])
    page = staff_client.get(change_url)
    assert page.status_code == 200
    assert SECRET not in page.content.decode()

    moved = staff_client.post(
        change_url,
        {"organization": other_org.pk, "provider_key": "github", "client_id": "evil"},
    )
    assert moved.status_code == 403
    app.refresh_from_db()
    assert (app.organization_id, app.client_id) == (org.pk, "cid")
    added = staff_client.post(
        reverse("admin:connections_providerapp_add"),
        {"organization": other_org.pk, "provider_key": "gitlab", "client_id": "x"},
    )
    assert added.status_code == 403
    assert ProviderApp.objects.count() == 1
