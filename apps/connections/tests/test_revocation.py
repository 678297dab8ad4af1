"""Revocation at providers whose endpoints are not RFC 7009 (GitHub, Slack, HubSpot,
Zendesk), each against a local HTTP server that records what it was sent."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings

from apps.audit.models import AuditEvent
from apps.broker.tests.upstream import RecordingUpstream, Reply
from apps.connections.models import Connection, ConnectionStatus, RevocationResult
from apps.connections.services import (
    connection_create_from_oauth,
    connection_disconnect,
    provider_app_save,
)
from apps.organizations.models import Organization
from apps.providers.registry import get_provider

TOKEN = {"access_token": "at-123", "refresh_token": "rt/456", "expires_in": 3600}


@pytest.fixture
def upstream() -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as server:
        yield server


def _connect(
    org: Organization, provider_key: Any, *, base_url_params: Any = None, token: Any = TOKEN
) -> Any:
    app = provider_app_save(
        organization=org, provider_key=provider_key, client_id="cid 1", client_secret="csecret"
    )
    return connection_create_from_oauth(
        organization=org,
        provider_key=provider_key,
        name=f"{provider_key}-main",
        token=dict(token),
        provider_app=app,
        scopes=[],
        base_url_params=base_url_params,
    )


def _disconnect(org: Organization, connection: Any) -> Any:
    row = connection_disconnect(connection_id=connection.pk, organization=org)
    assert row.status == ConnectionStatus.REVOKED
    assert (row.access_token, row.refresh_token) == ("", "")
    return row


def test_github_deletes_the_app_token_with_client_basic_auth(
    org: Organization, upstream: RecordingUpstream
) -> None:
    connection = _connect(org, "github")
    upstream.reply = Reply(status=204, body=b"")
    url = f"{upstream.url}/applications/{{client_id}}/token"
    with override_settings(GRANTRY_PROVIDER_URLS={"github.revocation_url": url}):
        row = _disconnect(org, connection)
    assert row.revocation_result == RevocationResult.REVOKED
    [sent] = upstream.requests  # the access token only: GitHub has no refresh-token revocation
    assert (sent.method, sent.path) == ("DELETE", "/applications/cid%201/token")
    assert base64.b64decode(sent.headers["Authorization"].removeprefix("Basic ")) == (
        b"cid 1:csecret"
    )
    assert json.loads(sent.body) == {"access_token": "at-123"}
    assert sent.headers["X-GitHub-Api-Version"] == "2022-11-28"


def test_slack_auth_revoke_is_sent_with_the_token_itself(
    org: Organization, upstream: RecordingUpstream
) -> None:
    connection = _connect(org, "slack", token={"access_token": "xoxp-1"})
    upstream.reply = Reply(body={"ok": True, "revoked": True})
    with override_settings(
        GRANTRY_PROVIDER_URLS={"slack.revocation_url": f"{upstream.url}/api/auth.revoke"}
    ):
        row = _disconnect(org, connection)
    assert row.revocation_result == RevocationResult.REVOKED
    [sent] = upstream.requests
    assert (sent.method, sent.path) == ("POST", "/api/auth.revoke")
    assert sent.headers["Authorization"] == "Bearer xoxp-1"


def test_a_slack_ok_false_answer_is_a_failed_revocation(
    org: Organization, upstream: RecordingUpstream
) -> None:
    connection = _connect(org, "slack", token={"access_token": "xoxp-1"})
    upstream.reply = Reply(body={"ok": False, "error": "invalid_auth"})
    with override_settings(
        GRANTRY_PROVIDER_URLS={"slack.revocation_url": f"{upstream.url}/api/auth.revoke"}
    ):
        row = _disconnect(org, connection)
    assert row.revocation_result == RevocationResult.FAILED
    assert "invalid_auth" in row.status_detail
    failed = AuditEvent.objects.get(action="connection.revocation_failed")
    assert failed.outcome == "failure"
    assert "xoxp-1" not in json.dumps(failed.metadata)


def test_hubspot_deletes_the_refresh_token_named_in_the_path(
    org: Organization, upstream: RecordingUpstream
) -> None:
    connection = _connect(org, "hubspot")
    upstream.reply = Reply(status=204, body=b"")
    url = f"{upstream.url}/oauth/v1/refresh-tokens"
    with override_settings(GRANTRY_PROVIDER_URLS={"hubspot.revocation_url": url}):
        row = _disconnect(org, connection)
    assert row.revocation_result == RevocationResult.REVOKED
    [sent] = upstream.requests
    assert (sent.method, sent.path) == ("DELETE", "/oauth/v1/refresh-tokens/rt%2F456")
    assert "Authorization" not in sent.headers


def test_zendesk_deletes_the_current_token_on_the_accounts_subdomain(
    org: Organization, upstream: RecordingUpstream
) -> None:
    connection = _connect(org, "zendesk", base_url_params={"subdomain": "acme"})
    assert (
        get_provider("zendesk").revocation_url
        == "https://{subdomain}.zendesk.com/api/v2/oauth/tokens/current.json"
    )
    upstream.reply = Reply(status=204, body=b"")
    url = f"{upstream.url}/api/v2/oauth/tokens/current.json"
    with override_settings(GRANTRY_PROVIDER_URLS={"zendesk.revocation_url": url}):
        row = _disconnect(org, connection)
    assert row.revocation_result == RevocationResult.REVOKED
    [sent] = upstream.requests
    assert (sent.method, sent.path) == ("DELETE", "/api/v2/oauth/tokens/current.json")
    assert sent.headers["Authorization"] == "Bearer at-123"


def test_an_error_status_is_a_failed_revocation_and_secrets_go_anyway(
    org: Organization, upstream: RecordingUpstream
) -> None:
    connection = _connect(org, "hubspot")
    upstream.reply = Reply(status=400, body={"status": "BAD_REFRESH_TOKEN"})
    url = f"{upstream.url}/oauth/v1/refresh-tokens"
    with override_settings(GRANTRY_PROVIDER_URLS={"hubspot.revocation_url": url}):
        row = _disconnect(org, connection)
    assert row.revocation_result == RevocationResult.FAILED
    assert "HTTP 400" in row.status_detail


def test_providers_without_revocation_are_recorded_as_unsupported(
    org: Organization, upstream: RecordingUpstream
) -> None:
    connection = _connect(org, "airtable")
    row = _disconnect(org, connection)
    assert row.revocation_result == RevocationResult.UNSUPPORTED
    assert upstream.requests == []
    supported = {
        key: get_provider(key).supports_revocation
        for key in ("github", "slack", "hubspot", "zendesk", "google", "airtable", "microsoft")
    }
    assert supported == {
        "github": True,
        "slack": True,
        "hubspot": True,
        "zendesk": True,
        "google": True,
        "airtable": False,
        "microsoft": False,
    }


def test_the_disconnect_page_says_whether_revocation_is_supported(
    org: Organization, admin: User
) -> None:
    github = _connect(org, "github")
    airtable = _connect(org, "airtable")
    client = Client()
    client.force_login(admin)
    page = client.get(f"/o/acme/connections/{github.pk}/disconnect/").content.decode()
    assert "Grantry asks GitHub to revoke its access (revocation: supported)" in page
    page = client.get(f"/o/acme/connections/{airtable.pk}/disconnect/").content.decode()
    assert "Revocation: not supported" in page
    assert "Airtable offers no revocation endpoint" in page
    assert Connection.objects.filter(status=ConnectionStatus.ACTIVE).count() == 2
