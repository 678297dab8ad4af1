"""The Sandbox's OAuth server over real HTTP: code + PKCE, rotation, revocation."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.contrib.auth.hashers import check_password
from oauth2_provider.models import get_application_model
from pytest_django.live_server_helper import LiveServer

from apps.sandbox.services import sandbox_client_register, sandbox_tokens_issue
from apps.sandbox.tests.conftest import REDIRECT_URI, OAuthClient, pkce_pair
from tests.factories import UserFactory


def test_metadata_describes_the_sandbox_server(live_server: LiveServer) -> None:
    base = f"{live_server.url}/sandbox/o"
    response = httpx.get(f"{base}/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    meta = response.json()
    assert meta["issuer"] == base
    assert meta["authorization_endpoint"] == f"{base}/authorize/"
    assert meta["token_endpoint"] == f"{base}/token/"
    assert meta["revocation_endpoint"] == f"{base}/revoke_token/"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["scopes_supported"] == ["read", "write"]
    assert meta["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert meta["response_types_supported"] == ["code"]
    assert meta["authorization_response_iss_parameter_supported"] is True


def test_full_code_flow_then_api_calls(oauth: OAuthClient) -> None:
    tokens = oauth.tokens()
    assert tokens["token_type"] == "Bearer"
    assert set(tokens["scope"].split()) == {"read", "write"}
    assert tokens["refresh_token"]

    me = oauth.api("GET", "/me", tokens["access_token"])
    assert me.status_code == 200
    assert me.json() == {
        "id": oauth.user.pk,
        "username": "alice@sandbox.test",
        "email": "alice@sandbox.test",
    }
    assert me.headers["X-Sandbox-Auth"] == "oauth"
    assert me.headers["X-RateLimit-Remaining"] == "999"

    created = oauth.api("POST", "/projects", tokens["access_token"], json={"name": "From OAuth"})
    assert created.status_code == 201
    task = oauth.api(
        "POST",
        f"/projects/{created.json()['id']}/tasks",
        tokens["access_token"],
        json={"title": "Ship it", "priority": 1},
    )
    assert task.status_code == 201
    assert task.json()["priority"] == 1
    listed = oauth.api("GET", "/projects", tokens["access_token"])
    assert [p["name"] for p in listed.json()["projects"]] == ["From OAuth"]


def test_code_is_single_use(oauth: OAuthClient) -> None:
    code, verifier = oauth.code()
    assert oauth.exchange(code, verifier).status_code == 200
    again = oauth.exchange(code, verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_wrong_code_verifier_is_invalid_grant(oauth: OAuthClient) -> None:
    code, _ = oauth.code()
    wrong_verifier, _ = pkce_pair()
    response = oauth.exchange(code, wrong_verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_authorize_without_pkce_is_refused(oauth: OAuthClient) -> None:
    response = oauth.http.get(
        f"{oauth.base}/o/authorize/",
        params={
            "response_type": "code",
            "client_id": oauth.client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "read",
            "state": "x",
        },
    )
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["error"] == ["invalid_request"]
    assert "code" not in query


def test_plain_pkce_method_is_refused(oauth: OAuthClient) -> None:
    response, _ = oauth.authorize(method="plain")
    query = parse_qs(urlsplit(response.headers.get("location", "")).query)
    assert "code" not in query
    assert query.get("error") == ["invalid_request"]


def test_unregistered_redirect_uri_is_not_redirected_to(oauth: OAuthClient) -> None:
    _, challenge = pkce_pair()
    response = oauth.http.get(
        f"{oauth.base}/o/authorize/",
        params={
            "response_type": "code",
            "client_id": oauth.client_id,
            "redirect_uri": "http://127.0.0.1:9/evil",
            "scope": "read",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    assert response.status_code == 400
    assert "Sandbox" in response.text
    assert "evil" not in response.headers.get("location", "")


def test_wrong_client_secret_is_refused(oauth: OAuthClient) -> None:
    code, verifier = oauth.code()
    response = httpx.post(
        f"{oauth.base}/o/token/",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "client_id": oauth.client_id,
            "client_secret": "nope",
        },
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_refresh_rotates_and_a_replayed_refresh_token_ends_the_family(oauth: OAuthClient) -> None:
    first = oauth.tokens()
    refreshed = oauth.token(grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    second = refreshed.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert set(second["scope"].split()) == {"read", "write"}
    assert oauth.api("GET", "/me", second["access_token"]).status_code == 200

    reused = oauth.token(grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    # RFC 9700 §4.14.2: a replay means the token leaked, so its whole family ends,
    # the rotated refresh token included (REFRESH_TOKEN_REUSE_PROTECTION).
    third = oauth.token(grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert third.status_code == 400
    assert third.json()["error"] == "invalid_grant"


def test_revoked_access_token_stops_working(oauth: OAuthClient) -> None:
    tokens = oauth.tokens()
    assert oauth.api("GET", "/me", tokens["access_token"]).status_code == 200
    revoked = httpx.post(
        f"{oauth.base}/o/revoke_token/",
        data={
            "token": tokens["access_token"],
            "token_type_hint": "access_token",
            "client_id": oauth.client_id,
            "client_secret": oauth.client_secret,
        },
    )
    assert revoked.status_code == 200
    after = oauth.api("GET", "/me", tokens["access_token"])
    assert after.status_code == 401
    assert after.headers["WWW-Authenticate"].startswith("Bearer")
    assert after.json()["error"] == "invalid_token"


def test_revoked_refresh_token_cannot_refresh(oauth: OAuthClient) -> None:
    tokens = oauth.tokens()
    revoked = httpx.post(
        f"{oauth.base}/o/revoke_token/",
        data={
            "token": tokens["refresh_token"],
            "token_type_hint": "refresh_token",
            "client_id": oauth.client_id,
            "client_secret": oauth.client_secret,
        },
    )
    assert revoked.status_code == 200
    response = oauth.token(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_read_token_cannot_write(oauth: OAuthClient) -> None:
    tokens = oauth.tokens(scope="read")
    assert tokens["scope"] == "read"
    assert oauth.api("GET", "/projects", tokens["access_token"]).status_code == 200
    response = oauth.api("POST", "/projects", tokens["access_token"], json={"name": "x"})
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert 'scope="write"' in response.headers["WWW-Authenticate"]


def test_write_only_token_cannot_read(oauth: OAuthClient) -> None:
    tokens = oauth.tokens(scope="write")
    assert oauth.api("GET", "/projects", tokens["access_token"]).status_code == 403
    assert (
        oauth.api("POST", "/projects", tokens["access_token"], json={"name": "ok"}).status_code
        == 201
    )


def test_refresh_with_narrower_scope_narrows_the_token(oauth: OAuthClient) -> None:
    tokens = oauth.tokens()
    narrowed = oauth.token(
        grant_type="refresh_token", refresh_token=tokens["refresh_token"], scope="read"
    )
    assert narrowed.status_code == 200
    access = narrowed.json()["access_token"]
    assert oauth.api("POST", "/projects", access, json={"name": "x"}).status_code == 403


@pytest.mark.django_db
def test_register_keeps_only_a_hash_of_the_client_secret() -> None:
    client_id, secret = sandbox_client_register(name="App", redirect_uris=[REDIRECT_URI])
    application = get_application_model().objects.get(client_id=client_id)
    assert len(secret) >= 40
    assert secret not in application.client_secret
    assert check_password(secret, application.client_secret)
    assert application.authorization_grant_type == "authorization-code"
    assert application.algorithm == ""
    assert application.redirect_uris == REDIRECT_URI
    assert secret not in repr(application)
    assert secret not in str(application)


@pytest.mark.django_db
def test_register_public_client_has_no_secret() -> None:
    client_id, secret = sandbox_client_register(
        name="SPA", redirect_uris=[REDIRECT_URI], confidential=False
    )
    assert secret == ""
    assert get_application_model().objects.get(client_id=client_id).client_type == "public"


def test_issued_tokens_work_and_rotate_at_the_real_endpoint(oauth: OAuthClient) -> None:
    issued = sandbox_tokens_issue(client_id=oauth.client_id, user=oauth.user, scope="read")
    assert issued["scope"] == "read"
    assert issued["expires_in"] == 3600
    assert oauth.api("GET", "/me", issued["access_token"]).json()["id"] == oauth.user.pk
    assert (
        oauth.api("POST", "/projects", issued["access_token"], json={"name": "x"}).status_code
        == 403
    )
    refreshed = oauth.token(grant_type="refresh_token", refresh_token=issued["refresh_token"])
    assert refreshed.status_code == 200
    reused = oauth.token(grant_type="refresh_token", refresh_token=issued["refresh_token"])
    assert reused.json()["error"] == "invalid_grant"


@pytest.mark.django_db
def test_issue_refuses_unknown_scopes() -> None:
    client_id, _ = sandbox_client_register(name="App", redirect_uris=[REDIRECT_URI])
    with pytest.raises(ValueError, match="admin"):
        sandbox_tokens_issue(client_id=client_id, user=UserFactory(), scope="read admin")
