"""Client ID Metadata Documents: fetched through Grantry's egress, bound to their URL,
size-capped, never from a private address, cached."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from oauth2_provider.models import Application

from apps.mcpauth.tests.conftest import CALLBACK, MetadataServer
from apps.mcpauth.tests.oauth import (
    Flow,
    authorize_url,
    consent,
    exchange,
    new_flow,
    redirect_params,
)
from apps.organizations.models import Organization

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client: Client, admin: User) -> Any:
    client.force_login(admin)
    return client


def cimd_flow(client_id: str) -> Flow:
    flow = new_flow(client_id)
    flow.redirect_uri = CALLBACK
    return flow


@pytest.mark.usefixtures("admin")
def test_a_valid_document_registers_the_client_once(
    signed_in: Any, metadata_server: MetadataServer, org: Organization
) -> None:
    from apps.broker.tests.conftest import make_agent

    agent = make_agent(org)
    client_id = metadata_server.document("/mcp/client.json")
    flow = cimd_flow(client_id)
    code = redirect_params(consent(signed_in, authorize_url(flow), worker=agent.worker))["code"]
    assert exchange(signed_in, flow, code).status_code == 200
    application = Application.objects.get(client_id=client_id)
    assert application.registration_source == "cimd"
    assert application.name == "Grantry test client"
    assert metadata_server.fetches == ["/mcp/client.json"]  # cached for the next requests


def test_a_document_for_another_url_is_refused(
    signed_in: Any, metadata_server: MetadataServer
) -> None:
    client_id = metadata_server.document("/a.json", client_id=f"{metadata_server.url}/b.json")
    response = signed_in.get(authorize_url(cimd_flow(client_id)))
    assert response.status_code == 400
    assert metadata_server.fetches == ["/a.json"]
    assert not Application.objects.filter(client_id=client_id).exists()


def test_a_document_that_is_too_large_is_refused(
    signed_in: Any, metadata_server: MetadataServer, caplog: pytest.LogCaptureFixture
) -> None:
    client_id = metadata_server.document("/big.json", padding="x" * 20_000)
    with caplog.at_level("INFO", logger="oauth2_provider.cimd"):
        response = signed_in.get(authorize_url(cimd_flow(client_id)))
    assert response.status_code == 400
    # Egress stopped reading at the 16 KB cap.
    assert "answered with more than 16384 bytes" in caplog.text
    assert not Application.objects.filter(client_id=client_id).exists()


@pytest.mark.parametrize(
    "client_id", ["https://10.1.2.3/client.json", "https://169.254.169.254/latest/meta-data"]
)
def test_a_private_address_is_never_fetched(signed_in: Any, client_id: str) -> None:
    response = signed_in.get(authorize_url(cimd_flow(client_id)))
    assert response.status_code == 400
    assert not Application.objects.filter(client_id=client_id).exists()


def test_a_redirect_uri_not_in_the_document_is_refused(
    signed_in: Any, metadata_server: MetadataServer
) -> None:
    client_id = metadata_server.document("/c.json")
    flow = cimd_flow(client_id)
    flow.redirect_uri = "https://evil.example/callback"
    response = signed_in.get(authorize_url(flow))
    assert response.status_code == 400
    assert "Location" not in response
