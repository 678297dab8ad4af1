"""Grantry as the OAuth client of a real MCP server behind its own authorization
server: the TypeScript SDK's example server, `simpleStreamableHttp.js --oauth`, with
its demo authorization server on a second port. Discovery from the 401's
resource_metadata (RFC 9728), the server's metadata (RFC 8414), dynamic registration
(RFC 7591; Grantry's address is not https here, so no client ID metadata document),
PKCE S256 and the RFC 8707 resource, consent in the browser (the demo server
consents at once, so plain HTTP stands in for the browser's redirects), the token in
custody, the tools listed with it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings

from apps.audit.models import AuditEvent
from apps.connections import custody
from apps.connections.gateway import client as upstream_client
from apps.connections.gateway.tools import upstream_for
from apps.connections.mcp_models import McpTool
from apps.connections.models import Connection, ConnectionStatus, OAuthState
from apps.connections.tests.mcp_servers import free_port, sdk_example


def add_with_oauth(client: Client, url: str, name: str = "demo") -> str:
    """Submit the Add form with OAuth; return the authorization URL Grantry sends the
    browser to."""
    response = client.post(
        "/o/acme/connections/mcp/add/",
        {"name": name, "transport": "http", "url": url, "auth": "oauth2"},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    return str(response["Location"])


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("org")
def test_oauth_connect_to_a_real_mcp_server_and_list_its_tools(admin: User) -> None:
    port, auth_port = free_port(), free_port()
    url = f"http://localhost:{port}/mcp"
    browser = Client()
    browser.force_login(admin)
    with sdk_example("simpleStreamableHttp.js", "--oauth", port=port, auth_port=auth_port):
        authorize = add_with_oauth(browser, url)

        # Discovery and registration happened before the redirect.
        connection = Connection.objects.get(name="demo")
        server = connection.mcp_server
        assert connection.status == ConnectionStatus.NEEDS_REAUTH  # waiting for consent
        assert server.oauth_issuer == f"http://localhost:{auth_port}/"
        assert server.oauth_resource == url
        assert server.oauth_registration == "dcr"
        assert server.oauth_client_id
        assert custody.mcp_client_credentials(server).client_secret  # a confidential client
        query = parse_qs(urlsplit(authorize).query)
        assert authorize.startswith(f"http://localhost:{auth_port}/authorize?")
        assert query["code_challenge_method"] == ["S256"]
        assert query["resource"] == [url]
        assert query["client_id"] == [server.oauth_client_id]
        assert "code_verifier" not in query

        # The admin's browser at the authorization server, sent back to Grantry.
        consent = httpx.get(authorize, follow_redirects=False)
        assert consent.status_code == 302
        callback = urlsplit(consent.headers["location"])
        done = browser.get(f"{callback.path}?{callback.query}")
        assert done.status_code == 302, done.content.decode()[:2000]
        assert done["Location"] == "/o/acme/connections/"

        connection.refresh_from_db()
        assert connection.status == ConnectionStatus.ACTIVE
        assert connection.is_oauth()
        assert OAuthState.objects.get().used_at is not None
        # Grantry's token works at the server: its tools are listed with it.
        listing = upstream_client.list_tools(upstream_for(connection, connection.mcp_server))
        assert {"greet", "multi-greet"} <= {t["name"] for t in listing.tools}
        detail = browser.post(f"/o/acme/connections/{connection.pk}/mcp/refresh/")
        assert detail.status_code == 302
        assert McpTool.objects.filter(connection=connection, name="greet").exists()

    created = AuditEvent.objects.get(action="connection.created", connection_id=connection.pk)
    assert created.metadata["registration"] == "dcr"
    assert AuditEvent.objects.filter(
        action="connection.reconnected", connection_id=connection.pk
    ).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("org")
def test_a_callback_from_another_issuer_is_refused(admin: User) -> None:
    """RFC 9207: an answer naming another authorization server connects nothing."""
    port, auth_port = free_port(), free_port()
    browser = Client()
    browser.force_login(admin)
    with sdk_example("simpleStreamableHttp.js", "--oauth", port=port, auth_port=auth_port):
        authorize = add_with_oauth(browser, f"http://localhost:{port}/mcp")
        consent = httpx.get(authorize, follow_redirects=False)
        callback = urlsplit(consent.headers["location"])
        answer = browser.get(f"{callback.path}?{callback.query}&iss=https://evil.example/")
    assert answer.status_code == 400
    assert b"unexpected server" in answer.content
    assert Connection.objects.get(name="demo").status == ConnectionStatus.NEEDS_REAUTH
    failed = AuditEvent.objects.get(action="connection.connect_failed")
    assert failed.reason.startswith("issuer_mismatch")


def test_where_the_server_takes_client_id_metadata_documents_grantry_uses_its_own(
    settings: Settings, client: Client
) -> None:
    """CIMD: the client id is the URL of the document Grantry serves about itself (only
    an https address can be one, so the tests above register dynamically)."""
    from apps.connections.gateway.oauth import Discovered, register

    settings.GRANTRY_BASE_URL = "https://grantry.example.com"
    found = Discovered(
        resource="https://mcp.example.com/mcp",
        issuer="https://auth.example.com/",
        authorization_endpoint="https://auth.example.com/authorize",
        token_endpoint="https://auth.example.com/token",
        cimd_supported=True,
    )
    registration = register(found)  # nothing sent: no registration request is needed
    assert registration.kind == "cimd"
    assert registration.client_id == "https://grantry.example.com/oauth/mcp-client.json"
    assert registration.auth_method == "none"
    document = client.get("/oauth/mcp-client.json").json()
    assert document["client_id"] == registration.client_id
    assert document["redirect_uris"] == ["https://grantry.example.com/oauth/callback/"]
    assert document["token_endpoint_auth_method"] == "none"
