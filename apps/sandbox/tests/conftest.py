"""Helpers for driving the Sandbox's real OAuth server over HTTP (live_server)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from oauth2_provider.models import get_application_model
from pytest_django.live_server_helper import LiveServer

from apps.sandbox.services import sandbox_client_register
from tests.factories import UserFactory

REDIRECT_URI = "http://127.0.0.1:9/callback"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


@dataclass
class OAuthClient:
    """A registered Sandbox client plus an httpx session logged in as `user`."""

    base: str  # the live server's /sandbox
    client_id: str
    client_secret: str
    user: User
    http: httpx.Client

    def authorize(
        self,
        *,
        scope: str = "read write",
        verifier: str | None = None,
        state: str = "s-123",
        method: str = "S256",
    ) -> tuple[httpx.Response, str]:
        verifier = verifier or pkce_pair()[0]
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
            if method == "S256"
            else verifier
        )
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": method,
        }
        response = self.http.get(f"{self.base}/o/authorize/?{urlencode(params)}")
        return response, verifier

    def code(self, *, scope: str = "read write") -> tuple[str, str]:
        response, verifier = self.authorize(scope=scope)
        assert response.status_code == 302, response.text
        location = response.headers["location"]
        assert location.startswith(REDIRECT_URI)
        query = parse_qs(urlsplit(location).query)
        assert query["state"] == ["s-123"]
        # RFC 9207: the issuer from the metadata document comes back with the code.
        assert query["iss"] == [f"{self.base}/o"]
        return query["code"][0], verifier

    def token(self, **data: str) -> httpx.Response:
        return httpx.post(
            f"{self.base}/o/token/",
            data={"client_id": self.client_id, "client_secret": self.client_secret, **data},
        )

    def exchange(self, code: str, verifier: str) -> httpx.Response:
        return self.token(
            grant_type="authorization_code",
            code=code,
            redirect_uri=REDIRECT_URI,
            code_verifier=verifier,
        )

    def tokens(self, *, scope: str = "read write") -> dict[str, str]:
        code, verifier = self.code(scope=scope)
        response = self.exchange(code, verifier)
        assert response.status_code == 200, response.text
        return response.json()

    def api(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.base}/api/v1{path}",
            headers={"Authorization": f"Bearer {token}"},
            **kwargs,
        )


def logged_in_http(user: User) -> httpx.Client:
    client = Client()
    client.force_login(user)
    session_id = client.cookies[settings.SESSION_COOKIE_NAME].value
    return httpx.Client(cookies={settings.SESSION_COOKIE_NAME: session_id}, follow_redirects=False)


@pytest.fixture
def oauth(live_server: LiveServer) -> Iterator[OAuthClient]:
    """A confidential client with skip_authorization (no consent click), for
    a browser-less authorization-code flow against the live server."""
    client_id, secret = sandbox_client_register(name="Grantry test", redirect_uris=[REDIRECT_URI])
    get_application_model().objects.filter(client_id=client_id).update(skip_authorization=True)
    user = UserFactory(email="alice@sandbox.test")
    with logged_in_http(user) as http:
        yield OAuthClient(
            base=f"{live_server.url}/sandbox",
            client_id=client_id,
            client_secret=secret,
            user=user,
            http=http,
        )
