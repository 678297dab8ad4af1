"""The official `mcp` Python client's OAuth support against a live Grantry: discovery →
registration (RFC 7591 DCR, or a Client ID Metadata Document served over HTTPS by a
local server) → consent in headless Chromium → token → tools/list and tools/call →
refresh → revoke → 401. Nothing is mocked: real HTTP, real browser, real database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from pydantic import AnyUrl
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from apps.audit.models import AuditEvent
from apps.broker.tests.conftest import make_agent
from apps.broker.tests.upstream import RecordingUpstream
from apps.mcpauth.models import McpGrant
from apps.mcpauth.services import grant_revoke
from apps.mcpauth.tests.conftest import CALLBACK, MetadataServer
from apps.organizations.models import Organization
from apps.workers.models import WorkerToken
from tests.chromium import CHROMIUM, CHROMIUM_ARGS, session_cookie


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


def consent_in_browser(url: str, *, base_url: str, session: str, worker_id: int) -> str:
    """Open the authorization URL signed in, pick the worker, allow; return the
    callback URL the browser was sent to."""
    # Its own Chromium: this runs in the OAuth client's redirect handler (another
    # thread), and the suite's session browser belongs to the test thread's Playwright.
    from playwright.sync_api import sync_playwright

    seen: dict[str, str] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context()
            context.add_cookies(
                [{"name": django_settings.SESSION_COOKIE_NAME, "value": session, "url": base_url}]
            )
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

            def land(route: Any) -> None:
                seen["url"] = route.request.url
                route.fulfill(status=200, content_type="text/plain", body="You can close this tab.")

            page.route(f"{CALLBACK}**", land)
            page.goto(url)
            assert "Connect an MCP client" in page.content()
            page.select_option("select[name=worker]", str(worker_id))
            page.click("button[name=allow]")
            page.wait_for_url(f"{CALLBACK}**")
            # Strict CSP: the consent page needs no inline script or style.
            assert not [e for e in errors if "Content Security Policy" in e], errors
        finally:
            browser.close()
    return seen["url"]


def run_client(
    mcp_url: str,
    *,
    base_url: str,
    session: str,
    worker_id: int,
    client_metadata_url: str | None = None,
) -> dict[str, Any]:
    storage = MemoryStorage()
    pending: dict[str, str] = {}

    async def redirect_handler(url: str) -> None:
        pending["authorize"] = url

    async def callback_handler() -> AuthorizationCodeResult:
        landed = await anyio.to_thread.run_sync(
            lambda: consent_in_browser(
                pending["authorize"], base_url=base_url, session=session, worker_id=worker_id
            )
        )
        query = {k: v[0] for k, v in parse_qs(urlsplit(landed).query).items()}
        return AuthorizationCodeResult(
            code=query["code"], state=query.get("state"), iss=query.get("iss")
        )

    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="Grantry test client",
            redirect_uris=[AnyUrl(CALLBACK)],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
        client_metadata_url=client_metadata_url,
    )
    out: dict[str, Any] = {"provider": provider, "storage": storage}

    async def main() -> None:
        async with (
            httpx2.AsyncClient(auth=provider, timeout=60) as hc,
            Client(streamable_http_client(mcp_url, http_client=hc), mode="auto") as client,
        ):
            out["tools"] = (await client.list_tools()).tools
            out["call"] = await client.call_tool("sandbox.list_projects", {})
            out["first_token"] = storage.tokens
            # The access token is past its expiry: the client refreshes on its own.
            provider.context.token_expiry_time = time.time() - 1
            out["after_refresh"] = await client.call_tool("sandbox.list_projects", {})
            out["second_token"] = storage.tokens

    anyio.run(main)
    return out


@pytest.fixture
def stack(
    transactional_db: None,  # noqa: ARG001 - database access
    live_server: LiveServer,
    settings: Settings,
    org: Organization,
    admin: User,
) -> Iterator[Any]:
    settings.GRANTRY_BASE_URL = live_server.url
    with RecordingUpstream() as upstream:
        settings.GRANTRY_PROVIDER_URLS = {"sandbox": upstream.url}
        agent = make_agent(org)
        yield {
            "mcp_url": f"{live_server.url}/mcp",
            "base_url": live_server.url,
            "session": session_cookie(admin),
            "agent": agent,
            "upstream": upstream,
        }


def check_flow(stack: dict[str, Any], out: dict[str, Any], client_id_check: Any) -> None:
    agent = stack["agent"]
    assert {t.name for t in out["tools"]} == {"sandbox.list_projects", "sandbox.list_tasks"}
    assert out["call"].is_error is False
    assert "Apollo" in out["call"].content[0].text
    assert out["after_refresh"].is_error is False
    first, second = out["first_token"], out["second_token"]
    assert first.access_token.startswith("gry_")
    assert second.access_token.startswith("gry_")
    assert first.access_token != second.access_token
    assert first.refresh_token != second.refresh_token

    grant = McpGrant.objects.get()
    assert grant.worker == agent.worker
    client_id_check(grant.client_id)
    tokens = WorkerToken.objects.filter(worker=agent.worker, audience=stack["mcp_url"])
    assert tokens.count() == 2
    assert all(t.oauth_client == "Grantry test client" for t in tokens)
    calls = AuditEvent.objects.filter(action="broker.execute", worker_id=agent.worker.pk)
    assert calls.count() == 2
    assert set(calls.values_list("token_id", flat=True)) == set(
        tokens.values_list("public_id", flat=True)
    )
    assert {e.metadata["oauth_client"] for e in calls} == {"Grantry test client"}

    # Revoking the grant ends the current access token at once: 401 with the challenge.
    grant_revoke(grant=grant, reason="test")
    response = httpx2.post(
        stack["mcp_url"],
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
        headers={"Authorization": f"Bearer {second.access_token}"},
    )
    assert response.status_code == 401
    assert "resource_metadata=" in response.headers["WWW-Authenticate"]
    refreshed = httpx2.post(
        f"{stack['base_url']}/oauth/token/",
        data={
            "grant_type": "refresh_token",
            "refresh_token": second.refresh_token,
            "client_id": grant.client_id,
        },
    )
    assert refreshed.json()["error"] == "invalid_grant"


def test_dynamic_registration_flow(stack: Any) -> None:
    out = run_client(
        stack["mcp_url"],
        base_url=stack["base_url"],
        session=stack["session"],
        worker_id=stack["agent"].worker.pk,
    )
    assert out["storage"].client_info.client_id  # registered by RFC 7591

    def is_dcr(client_id: str) -> None:
        assert not client_id.startswith("https://")

    check_flow(stack, out, is_dcr)


def test_client_id_metadata_document_flow(stack: Any, metadata_server: MetadataServer) -> None:
    client_id = metadata_server.document("/oauth/client.json")
    out = run_client(
        stack["mcp_url"],
        base_url=stack["base_url"],
        session=stack["session"],
        worker_id=stack["agent"].worker.pk,
        client_metadata_url=client_id,
    )

    def is_cimd(got: str) -> None:
        assert got == client_id

    check_flow(stack, out, is_cimd)
    # Fetched once and cached (the document's max-age), not on every request.
    assert metadata_server.fetches == ["/oauth/client.json"]
