"""A canary secret stored in a connection appears in no page, API response, admin
screen, audit event, exception message or log line that we can reach."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from apps.audit.models import AuditEvent
from apps.connections import credentials, custody, services
from apps.connections.models import Connection, McpServer, ProviderApp
from apps.organizations.models import Organization
from apps.providers.registry import get_provider
from tests.factories import UserFactory

CANARY = "CANARY-7d1e0f-do-not-leak"


@pytest.mark.usefixtures("sandbox", "admin")
def test_the_canary_appears_nowhere(
    admin_client: Client, org: Organization, caplog: pytest.LogCaptureFixture, settings: Settings
) -> None:
    caplog.set_level(logging.DEBUG)
    app = ProviderApp.objects.get(organization=org)
    app.client_secret = CANARY + "-client-secret"
    app.save()
    conn = Connection.objects.create(
        organization=org,
        provider_key="sandbox",
        name="canary",
        auth_type="oauth2",
        provider_app=app,
        access_token=CANARY + "-access",
        refresh_token=CANARY + "-refresh",
        has_refresh_token=True,
        expires_at=timezone.now() - timedelta(minutes=5),
        scopes=["read"],
        account_label="canary@sandbox",
    )
    key_conn = Connection.objects.create(
        organization=org,
        provider_key="sandbox",
        name="canary-key",
        auth_type="api_key",
        api_key=CANARY + "-api-key",
    )
    # An MCP server with every kind of secret it can hold (apps.connections.gateway).
    mcp_conn = Connection.objects.create(
        organization=org,
        provider_key="mcp",
        name="canary-mcp",
        auth_type="api_key",
        api_key=CANARY + "-mcp-key",
    )
    mcp_server = McpServer.objects.create(
        connection=mcp_conn,
        transport="http",
        url="http://127.0.0.1:1/mcp",
        env_names=["TOKEN"],
        env_secrets=json.dumps({"TOKEN": CANARY + "-env"}),
        oauth_client_id="client-1",
        oauth_client_secret=CANARY + "-mcp-client-secret",
    )
    collected: list[str] = [
        repr(conn),
        str(conn),
        repr(app),
        str(app),
        repr(key_conn),
        repr(mcp_conn),
        repr(mcp_server),
        str(mcp_server),
        repr(credentials.mcp_auth_for(mcp_conn, mcp_server)),
    ]

    def grab(client: Client, path: str, method: str = "get") -> None:
        response = getattr(client, method)(path)
        assert response.status_code < 500, (path, response.status_code)
        collected.append(
            f"{path}\n{response.status_code}\n{dict(response.headers)}\n"
            + response.content.decode(errors="replace")
        )

    # Dashboard pages an admin can reach.
    for path in [
        "/o/acme/connections/",
        "/o/acme/connections/connect/",
        "/o/acme/connections/connect/sandbox/",
        "/o/acme/connections/apps/sandbox/",
        f"/o/acme/connections/{conn.pk}/disconnect/",
        f"/o/acme/connections/{key_conn.pk}/disconnect/",
        f"/o/acme/connections/{mcp_conn.pk}/mcp/",
        f"/o/acme/connections/{mcp_conn.pk}/disconnect/",
        "/o/acme/connections/mcp/add/",
        "/oauth/mcp-client.json",
    ]:
        grab(admin_client, path)
    # A server that cannot be reached: the refresh's message and the health it records.
    grab(admin_client, f"/o/acme/connections/{mcp_conn.pk}/mcp/refresh/", "post")
    grab(admin_client, f"/o/acme/connections/{mcp_conn.pk}/mcp/")
    # Management API.
    for path in [
        "/api/v1/orgs/acme/connections/",
        f"/api/v1/orgs/acme/connections/{conn.pk}/",
        f"/api/v1/orgs/acme/connections/{key_conn.pk}/",
    ]:
        grab(admin_client, path)
    # Django admin screens, as a superuser.
    superuser = UserFactory(email="root@grantry.test", is_staff=True, is_superuser=True)
    root = Client()
    root.force_login(superuser)
    for path in [
        "/admin/connections/connection/",
        f"/admin/connections/connection/{conn.pk}/change/",
        f"/admin/connections/connection/{key_conn.pk}/change/",
        "/admin/connections/providerapp/",
        f"/admin/connections/providerapp/{app.pk}/change/",
        "/admin/connections/oauthstate/",
    ]:
        grab(root, path)

    # Failure paths produce messages: a refresh the Sandbox refuses (unknown
    # refresh token), an unreachable token endpoint, an unreachable revocation.
    with pytest.raises(custody.NeedsReauth) as refused:
        credentials.auth_for(conn, get_provider("sandbox"))
    collected.append(str(refused.value))
    conn.refresh_from_db()
    collected.append(conn.status_detail + conn.last_refresh_error)
    Connection.objects.filter(pk=conn.pk).update(status="active")
    settings.GRANTRY_PROVIDER_URLS = {
        "sandbox.token_url": "http://127.0.0.1:1/token",
        "sandbox.revocation_url": "http://127.0.0.1:1/revoke",
    }
    with pytest.raises(services.RefreshTemporarilyFailed) as transient:
        services.connection_refresh(connection_id=conn.pk, force=True)
    collected.append(str(transient.value))
    grab(admin_client, "/o/acme/connections/")
    grab(admin_client, f"/o/acme/connections/{conn.pk}/disconnect/", "post")
    grab(admin_client, "/o/acme/connections/")
    # A rejected API key on the form.
    response = admin_client.post(
        "/o/acme/connections/connect/sandbox/",
        {"kind": "api_key", "key-name": "x", "key-api_key": CANARY},
    )
    collected.append(response.content.decode())

    # Audit events (what reviewers and exports read).
    for event in AuditEvent.objects.all():
        collected.append(repr(event.__dict__))
    collected.extend(record.getMessage() for record in caplog.records)
    collected.extend(str(record.__dict__) for record in caplog.records)

    everything = "\n".join(collected)
    assert len(collected) > 25
    assert CANARY not in everything
    # Sanity: the secrets really are stored (so their absence above means something).
    key_conn.refresh_from_db()
    assert key_conn.api_key == CANARY + "-api-key"
