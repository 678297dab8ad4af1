"""Providers whose URLs need a per-connection value (Zendesk's subdomain)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.connections.models import OAuthState
from apps.connections.services import provider_app_save
from apps.organizations.models import Organization


@pytest.fixture
def zendesk_admin(org: Organization, admin: User) -> Client:
    provider_app_save(
        organization=org, provider_key="zendesk", client_id="zd-client", client_secret="zd-secret"
    )
    client = Client()
    client.force_login(admin)
    return client


def test_the_oauth_form_asks_for_the_subdomain_and_uses_it(zendesk_admin: Client) -> None:
    page = zendesk_admin.get("/o/acme/connections/connect/zendesk/")
    assert "Subdomain" in page.content.decode()
    response = zendesk_admin.post(
        "/o/acme/connections/connect/zendesk/",
        {
            "kind": "oauth",
            "oauth-name": "zendesk-main",
            "oauth-param_subdomain": "acme-support",
        },
    )
    assert response.status_code == 302
    target = urlsplit(response["Location"])
    assert (target.scheme, target.netloc, target.path) == (
        "https",
        "acme-support.zendesk.com",
        "/oauth/authorizations/new",
    )
    assert OAuthState.objects.get().base_url_params == {"subdomain": "acme-support"}


@pytest.mark.parametrize("bad", ["evil.example/x", "a@b", "-x", ""])
def test_an_unsafe_subdomain_is_refused(zendesk_admin: Client, bad: str) -> None:
    response = zendesk_admin.post(
        "/o/acme/connections/connect/zendesk/",
        {
            "kind": "oauth",
            "oauth-name": "zendesk-main",
            "oauth-param_subdomain": bad,
        },
    )
    assert response.status_code == 400
    assert not OAuthState.objects.exists()
