"""The browser connect flow against the real Sandbox OAuth server (over HTTP)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import get_access_token_model
from pytest_django.live_server_helper import LiveServer

from apps.audit.models import AuditEvent
from apps.connections.models import Connection, ConnectionStatus, OAuthState
from apps.connections.tests.conftest import (
    Sandbox,
    authorize,
    callback,
    checksum,
    connect,
    deny,
    start_connect,
)
from apps.organizations.models import Organization


def test_connect_stores_an_active_connection_with_identity_and_scopes(
    sandbox: Sandbox, admin_client: Client, admin: User
) -> None:
    authorize_url = start_connect(admin_client)
    query = parse_qs(urlsplit(authorize_url).query)
    assert authorize_url.startswith(f"{sandbox.base_url}/sandbox/o/authorize/")
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [f"{sandbox.base_url}/oauth/callback/"]
    assert query["client_id"] == [sandbox.client_id]
    assert "code_verifier" not in query  # the verifier stays server-side

    callback_url = authorize(admin_client, authorize_url)
    response = callback(admin_client, callback_url)
    assert response.status_code == 302
    assert response["Location"] == "/o/acme/connections/"

    connection = Connection.objects.get(name="sandbox-main")
    assert connection.status == ConnectionStatus.ACTIVE
    assert connection.account_label == admin.email
    assert sorted(connection.scopes) == ["read", "write"]
    assert connection.created_by == admin
    assert connection.has_refresh_token
    assert connection.expires_at > timezone.now()
    # The stored token is the one the Sandbox issued.
    assert (
        get_access_token_model()
        .objects.filter(token_checksum=checksum(connection.access_token))
        .exists()
    )
    event = AuditEvent.objects.get(action="connection.created")
    assert event.connection_id == connection.pk
    assert event.actor_id == str(admin.pk)

    page = admin_client.get("/o/acme/connections/")
    html = page.content.decode()
    assert "sandbox-main" in html
    assert admin.email in html
    assert "Active" in html


@pytest.mark.usefixtures("sandbox")
def test_a_reused_state_gets_a_clear_page_and_nothing_new(admin_client: Client) -> None:
    callback_url = authorize(admin_client, start_connect(admin_client))
    assert callback(admin_client, callback_url).status_code == 302
    again = callback(admin_client, callback_url)
    assert again.status_code == 400
    text = again.content.decode()
    assert "already used" in text
    assert "What to do next" in text
    assert Connection.objects.count() == 1


@pytest.mark.usefixtures("sandbox")
def test_state_from_another_session_is_refused(admin_client: Client, admin: User) -> None:
    callback_url = authorize(admin_client, start_connect(admin_client))
    other_browser = Client()
    other_browser.force_login(admin)  # same person, different session
    response = callback(other_browser, callback_url)
    assert response.status_code == 400
    assert "not valid here" in response.content.decode()
    assert not Connection.objects.exists()
    # The state was not burnt by the foreign attempt: the real browser still finishes.
    assert callback(admin_client, callback_url).status_code == 302


@pytest.mark.usefixtures("sandbox")
def test_an_unknown_state_is_refused(admin_client: Client) -> None:
    callback_url = authorize(admin_client, start_connect(admin_client))
    forged = callback_url.replace("state=", "state=x")
    response = callback(admin_client, forged)
    assert response.status_code == 400
    assert not Connection.objects.exists()


@pytest.mark.usefixtures("sandbox")
def test_an_expired_state_is_refused(admin_client: Client) -> None:
    callback_url = authorize(admin_client, start_connect(admin_client))
    OAuthState.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = callback(admin_client, callback_url)
    assert response.status_code == 400
    assert "expired" in response.content.decode()
    assert not Connection.objects.exists()


def test_consent_denied_at_the_sandbox(sandbox: Sandbox, admin_client: Client) -> None:
    app = sandbox.application
    app.skip_authorization = False
    app.save()
    callback_url = deny(admin_client, start_connect(admin_client))
    assert parse_qs(urlsplit(callback_url).query)["error"] == ["access_denied"]
    response = callback(admin_client, callback_url)
    assert response.status_code == 400
    text = response.content.decode()
    assert "Access was not granted" in text
    assert "start Connect again" in text
    assert not Connection.objects.exists()
    assert AuditEvent.objects.filter(action="connection.connect_failed").exists()


@pytest.mark.usefixtures("sandbox")
def test_a_wrong_pkce_verifier_fails_the_token_exchange(admin_client: Client) -> None:
    callback_url = authorize(admin_client, start_connect(admin_client))
    state = OAuthState.objects.get()
    state.code_verifier = "x" * 64  # not the verifier the challenge was made from
    state.save()
    response = callback(admin_client, callback_url)
    assert response.status_code == 400
    text = response.content.decode()
    assert "Could not get a token" in text
    assert "invalid_grant" in text
    assert not Connection.objects.exists()


@pytest.mark.usefixtures("sandbox")
def test_a_mismatched_issuer_is_refused(admin_client: Client) -> None:
    callback_url = authorize(admin_client, start_connect(admin_client))
    forged = callback_url + "&iss=https%3A%2F%2Fevil.example%2Fsandbox%2Fo"
    response = callback(admin_client, forged)
    assert response.status_code == 400
    assert "unexpected server" in response.content.decode()
    assert not Connection.objects.exists()


def test_the_right_issuer_is_accepted(sandbox: Sandbox, admin_client: Client) -> None:
    callback_url = authorize(admin_client, start_connect(admin_client))
    response = callback(admin_client, callback_url + f"&iss={sandbox.base_url}/sandbox/o")
    assert response.status_code == 302
    assert Connection.objects.count() == 1


@pytest.mark.usefixtures("org")
def test_connect_without_an_oauth_app_points_to_the_app_settings(
    live_server: LiveServer, admin_client: Client
) -> None:
    from django.test import override_settings

    with override_settings(GRANTRY_BASE_URL=live_server.url, GRANTRY_SANDBOX_URL=""):
        page = admin_client.get("/o/acme/connections/connect/sandbox/")
    text = page.content.decode()
    assert page.status_code == 200
    assert "Set up the OAuth app" in text
    assert f"{live_server.url}/oauth/callback/" in text


@pytest.mark.usefixtures("sandbox")
def test_reconnect_replaces_the_tokens_of_the_same_connection(admin_client: Client) -> None:
    connection = connect(admin_client)
    Connection.objects.filter(pk=connection.pk).update(status=ConnectionStatus.NEEDS_REAUTH)
    response = admin_client.post(f"/o/acme/connections/{connection.pk}/reconnect/")
    assert response.status_code == 302
    assert callback(admin_client, authorize(admin_client, response["Location"])).status_code == 302
    fresh = Connection.objects.get(pk=connection.pk)
    assert fresh.status == ConnectionStatus.ACTIVE
    assert fresh.access_token != connection.access_token
    assert Connection.objects.count() == 1
    assert AuditEvent.objects.filter(action="connection.reconnected").exists()


@pytest.mark.parametrize("role", ["member", "reviewer"])
@pytest.mark.usefixtures("sandbox")
def test_only_admins_can_start_connect(org: Organization, make_member: Any, role: str) -> None:
    client = Client()
    client.force_login(make_member(org, role, f"{role}-x@acme.test"))
    response = client.post(
        "/o/acme/connections/connect/sandbox/", {"kind": "oauth", "oauth-name": "nope"}
    )
    assert response.status_code == 403
    assert client.get("/o/acme/connections/").status_code == 200  # but they can read


@pytest.mark.usefixtures("sandbox")
def test_old_connect_attempts_are_purged(admin_client: Client) -> None:
    from apps.connections.tasks import purge_oauth_states

    start_connect(admin_client, name="fresh-one")
    start_connect(admin_client, name="old-one")
    OAuthState.objects.filter(connection_name="old-one").update(
        expires_at=timezone.now() - timedelta(days=2)
    )
    assert purge_oauth_states() == 1
    assert list(OAuthState.objects.values_list("connection_name", flat=True)) == ["fresh-one"]
