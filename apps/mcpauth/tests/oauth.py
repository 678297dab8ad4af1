"""Test helpers: drive Grantry's authorization server with Django's test client
(real views, real DOT, real database; the browser flow is in test_mcp_client.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

REDIRECT_URI = "http://127.0.0.1:9999/callback"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return verifier, challenge.decode()


def register(client: Any, *, redirect_uri: str = REDIRECT_URI, name: str = "Test client") -> str:
    response = client.post(
        "/oauth/register/",
        json.dumps(
            {
                "client_name": name,
                "redirect_uris": [redirect_uri],
                "grant_types": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_method": "none",
            }
        ),
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return str(response.json()["client_id"])


@dataclass
class Flow:
    client_id: str
    verifier: str
    challenge: str
    redirect_uri: str = REDIRECT_URI
    state: str = "st-1"

    def params(self, **overrides: Any) -> dict[str, Any]:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "state": self.state,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
            "scope": "mcp",
        }
        params.update(overrides)
        return {k: v for k, v in params.items() if v is not None}


def new_flow(client_id: str) -> Flow:
    verifier, challenge = pkce()
    return Flow(client_id=client_id, verifier=verifier, challenge=challenge)


def authorize_url(flow: Flow, resource: str | None = None, **overrides: Any) -> str:
    params = flow.params(**overrides)
    if resource is not None:
        params["resource"] = resource
    return "/oauth/authorize/?" + urlencode(params)


def redirect_params(response: Any) -> dict[str, str]:
    assert response.status_code == 302, response.content[:500]
    location = response["Location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def consent(
    client: Any,
    url: str,
    *,
    worker: Any = None,
    allow: bool = True,
    fields: dict[str, str] | None = None,
) -> Any:
    """GET the consent page, then POST its form back as a person would."""
    page = client.get(url)
    assert page.status_code == 200, page.content[:800]
    form = page.context["form"]
    data = {name: form[name].value() or "" for name in form.fields if form[name].is_hidden}
    if worker is not None:
        data["worker"] = str(worker.pk)
    data.update(fields or {})
    if allow:
        data["allow"] = "Authorize"
    return client.post(url, data)


def exchange(client: Any, flow: Flow, code: str, **overrides: Any) -> Any:
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": flow.redirect_uri,
        "client_id": flow.client_id,
        "code_verifier": flow.verifier,
    }
    body.update(overrides)
    return client.post("/oauth/token/", {k: v for k, v in body.items() if v is not None})


def refresh(client: Any, flow: Flow, refresh_token: str) -> Any:
    return client.post(
        "/oauth/token/",
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": flow.client_id,
        },
    )
