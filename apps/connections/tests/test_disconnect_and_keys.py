"""Disconnect (RFC 7009 at the Sandbox), API-key connections, the management API."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from oauth2_provider.models import get_access_token_model, get_refresh_token_model
from pytest_django.fixtures import Settings

from apps.audit.models import AuditEvent
from apps.connections.models import Connection, ConnectionStatus, RevocationResult
from apps.connections.tests.conftest import Sandbox, checksum
from apps.organizations.models import Organization
from apps.sandbox.services import sandbox_api_key_create


def test_disconnect_revokes_at_the_provider_and_destroys_secrets(
    connected: Connection, admin_client: Client
) -> None:
    access, refresh = connected.access_token, connected.refresh_token
    page = admin_client.get(f"/o/acme/connections/{connected.pk}/disconnect/")
    assert page.status_code == 200
    assert "Disconnect and destroy" in page.content.decode()
    response = admin_client.post(
        f"/o/acme/connections/{connected.pk}/disconnect/", {"confirmed": "yes"}
    )
    assert response.status_code == 302
    row = Connection.objects.get(pk=connected.pk)
    assert row.status == ConnectionStatus.REVOKED
    assert row.revocation_result == RevocationResult.REVOKED
    assert (row.access_token, row.refresh_token, row.api_key) == ("", "", "")
    assert row.account_label
    assert row.scopes
    # The Sandbox no longer honours either token.
    assert not get_access_token_model().objects.filter(token_checksum=checksum(access)).exists()
    assert (
        get_refresh_token_model().objects.get(token_checksum=checksum(refresh)).revoked is not None
    )
    assert AuditEvent.objects.filter(
        action="connection.disconnected", connection_id=row.pk
    ).exists()


def test_a_failed_revocation_is_recorded_and_secrets_are_destroyed_anyway(
    connected: Connection, admin_client: Client, settings: Settings
) -> None:
    settings.GRANTRY_PROVIDER_URLS = {"sandbox.revocation_url": "http://127.0.0.1:1/revoke/"}
    response = admin_client.post(
        f"/o/acme/connections/{connected.pk}/disconnect/", {"confirmed": "yes"}, follow=True
    )
    assert "did not confirm the revocation" in response.content.decode()
    row = Connection.objects.get(pk=connected.pk)
    assert row.status == ConnectionStatus.REVOKED
    assert row.revocation_result == RevocationResult.FAILED
    assert (row.access_token, row.refresh_token) == ("", "")
    failed = AuditEvent.objects.get(action="connection.revocation_failed")
    assert failed.outcome == "failure"


@pytest.mark.usefixtures("sandbox")
def test_api_key_is_checked_with_the_provider_before_saving(
    admin_client: Client, admin: User
) -> None:
    key = sandbox_api_key_create(user=admin, name="for grantry")
    response = admin_client.post(
        "/o/acme/connections/connect/sandbox/",
        {"kind": "api_key", "key-name": "sandbox-key", "key-api_key": key},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    connection = Connection.objects.get(name="sandbox-key")
    assert connection.auth_type == "api_key"
    assert connection.account_label == admin.email
    assert connection.api_key == key
    assert AuditEvent.objects.filter(
        action="connection.created", connection_id=connection.pk
    ).exists()


@pytest.mark.usefixtures("sandbox")
def test_a_bad_api_key_gets_a_clear_error_and_nothing_is_saved(admin_client: Client) -> None:
    response = admin_client.post(
        "/o/acme/connections/connect/sandbox/",
        {"kind": "api_key", "key-name": "sandbox-key", "key-api_key": "sbx_not-a-real-key"},
    )
    assert response.status_code == 400
    text = response.content.decode()
    assert "rejected the credential" in text
    assert "Nothing was saved" in text
    assert "sbx_not-a-real-key" not in text  # the key is not rendered back
    assert not Connection.objects.exists()
    assert not AuditEvent.objects.filter(action="connection.created").exists()


def test_provider_app_secret_is_write_only(
    sandbox: Sandbox, admin_client: Client, org: Organization
) -> None:
    page = admin_client.get("/o/acme/connections/apps/sandbox/")
    text = page.content.decode()
    assert sandbox.client_id in text
    assert sandbox.client_secret not in text
    assert "•••• set" in text
    assert f"{sandbox.base_url}/oauth/callback/" in text
    # Saving without a secret keeps the stored one.
    response = admin_client.post(
        "/o/acme/connections/apps/sandbox/", {"client_id": sandbox.client_id, "client_secret": ""}
    )
    assert response.status_code == 302
    from apps.connections.custody import client_credentials
    from apps.connections.models import ProviderApp

    app = ProviderApp.objects.get(organization=org)
    assert client_credentials(app).client_secret == sandbox.client_secret
    assert AuditEvent.objects.filter(action="provider_app.updated").exists()


def test_management_api_reads_and_disconnects(
    connected: Connection, admin: User, reviewer: User
) -> None:
    reader = Client()
    reader.force_login(reviewer)
    listing = reader.get("/api/v1/orgs/acme/connections/")
    assert listing.status_code == 200
    body = listing.json()
    assert [c["name"] for c in body["results"]] == ["sandbox-main"]
    assert "access_token" not in body["results"][0]
    detail = reader.get(f"/api/v1/orgs/acme/connections/{connected.pk}/")
    assert detail.status_code == 200
    assert detail.json()["status"] == "active"
    denied = reader.post(f"/api/v1/orgs/acme/connections/{connected.pk}/disconnect/")
    assert denied.status_code == 403
    writer = Client()
    writer.force_login(admin)
    done = writer.post(f"/api/v1/orgs/acme/connections/{connected.pk}/disconnect/")
    assert done.status_code == 200
    assert done.json()["status"] == "revoked"


@pytest.mark.parametrize(
    "path",
    [
        "/o/acme/connections/",
        "/o/acme/connections/connect/",
        "/o/acme/connections/connect/sandbox/",
        "/o/acme/connections/apps/sandbox/",
        "/o/acme/connections/{pk}/disconnect/",
        "/api/v1/orgs/acme/connections/",
        "/api/v1/orgs/acme/connections/{pk}/",
    ],
)
def test_another_organization_sees_nothing(
    connected: Connection, outsider: User, path: str
) -> None:
    client = Client()
    client.force_login(outsider)
    response = client.get(path.format(pk=connected.pk))
    assert response.status_code == 404


def test_another_organizations_connection_id_is_404_inside_my_org(
    connected: Connection, other_org: Organization, make_member: Any
) -> None:
    from tests.factories import MembershipFactory

    # An admin of BOTH orgs still cannot reach acme's connection through globex's URLs.
    user = make_member(other_org, "admin", "both@globex.test")
    MembershipFactory(organization=connected.organization, user=user, role="member")
    client = Client()
    client.force_login(user)
    assert client.post(f"/o/globex/connections/{connected.pk}/disconnect/").status_code == 404
    assert client.get(f"/api/v1/orgs/globex/connections/{connected.pk}/").status_code == 404
    assert Connection.objects.get(pk=connected.pk).status == ConnectionStatus.ACTIVE
