"""Connections against the real Sandbox OAuth server over HTTP (live_server).

Grantry and the Sandbox run in the same live server: GRANTRY_BASE_URL points
at it, so the redirect URI, the Sandbox provider's URLs and the token calls
(through apps.core.egress) are all real HTTP on localhost."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from oauth2_provider.models import get_application_model
from pytest_django.live_server_helper import LiveServer

from apps.connections import services
from apps.connections.models import Connection
from apps.organizations.models import Organization
from apps.sandbox.services import sandbox_client_register
from tests.factories import MembershipFactory, UserFactory


@dataclass
class Sandbox:
    base_url: str  # the live server, e.g. http://localhost:41234
    client_id: str
    client_secret: str

    @property
    def application(self) -> Any:
        return get_application_model().objects.get(client_id=self.client_id)


@pytest.fixture
def sandbox(live_server: LiveServer, org: Organization) -> Iterator[Sandbox]:
    with override_settings(GRANTRY_BASE_URL=live_server.url, GRANTRY_SANDBOX_URL=""):
        client_id, secret = sandbox_client_register(
            name="Grantry (acme)", redirect_uris=[services.oauth_redirect_uri()]
        )
        get_application_model().objects.filter(client_id=client_id).update(skip_authorization=True)
        services.provider_app_save(
            organization=org, provider_key="sandbox", client_id=client_id, client_secret=secret
        )
        yield Sandbox(base_url=live_server.url, client_id=client_id, client_secret=secret)


@pytest.fixture
def admin_client(admin: User) -> Client:
    client = Client()
    client.force_login(admin)
    return client


def _host_of(url: str) -> str:
    return urlsplit(url).netloc


def start_connect(client: Client, *, name: str = "sandbox-main", org_slug: str = "acme") -> str:
    """Submit the Connect form; return the Sandbox authorize URL it redirects to."""
    response = client.post(
        f"/o/{org_slug}/connections/connect/sandbox/", {"kind": "oauth", "oauth-name": name}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    return response["Location"]


def authorize(client: Client, authorize_url: str) -> str:
    """The browser at the Sandbox (same session; skip_authorization): return the
    callback URL the Sandbox redirects back to."""
    parts = urlsplit(authorize_url)
    response = client.get(f"{parts.path}?{parts.query}", HTTP_HOST=parts.netloc)
    assert response.status_code == 302, response.content.decode()[:2000]
    return response["Location"]


def deny(client: Client, authorize_url: str) -> str:
    """Show the real consent page and press Deny; return the callback URL."""
    parts = urlsplit(authorize_url)
    page = client.get(f"{parts.path}?{parts.query}", HTTP_HOST=parts.netloc)
    assert page.status_code == 200, page.content.decode()[:2000]
    html = page.content.decode()
    fields = {
        m.group(1): unescape(m.group(2))
        for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html)
    }
    response = client.post(parts.path, fields, HTTP_HOST=parts.netloc)
    assert response.status_code == 302, response.content.decode()[:2000]
    return response["Location"]


def callback(client: Client, callback_url: str) -> Any:
    parts = urlsplit(callback_url)
    assert parts.path == "/oauth/callback/"
    return client.get(f"{parts.path}?{parts.query}")


def connect(client: Client, *, name: str = "sandbox-main") -> Connection:
    response = callback(client, authorize(client, start_connect(client, name=name)))
    assert response.status_code == 302, response.content.decode()[:3000]
    return Connection.objects.get(name=name)


@pytest.fixture
def connected(sandbox: Sandbox, admin_client: Client) -> Connection:  # noqa: ARG001 - set up first, for its side effect
    return connect(admin_client)


@pytest.fixture
def make_member() -> Any:
    def make(org: Any, role: str, email: str) -> Any:
        return MembershipFactory(organization=org, role=role, user=UserFactory(email=email)).user

    return make


def checksum(raw: str) -> str:
    """How django-oauth-toolkit finds a token: it stores only this (RFC 9700 storage)."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()
