"""The Sandbox's browser pages: consent screen, home page with API keys, admin."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from apps.sandbox.models import SandboxApiKey
from apps.sandbox.services import sandbox_api_key_create, sandbox_client_register
from apps.sandbox.tests.conftest import REDIRECT_URI, pkce_pair
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice() -> User:
    return UserFactory(email="alice@sandbox.test")


@pytest.fixture
def alice_client(alice: User) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def _authorize_url(client_id: Any, scope: str = "read write") -> Any:
    _, challenge = pkce_pair()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": scope,
            "state": "st",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return f"/sandbox/o/authorize/?{query}"


def test_anonymous_authorize_goes_to_grantry_login_with_next() -> None:
    client_id, _ = sandbox_client_register(name="Grantry", redirect_uris=[REDIRECT_URI])
    url = _authorize_url(client_id)
    response = Client().get(url)
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == reverse("account_login")
    assert parse_qs(location.query)["next"] == [url]


def test_consent_page_is_the_sandbox_product(alice_client: Client) -> None:
    client_id, _ = sandbox_client_register(name="Grantry (Acme)", redirect_uris=[REDIRECT_URI])
    response = alice_client.get(_authorize_url(client_id))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Sandbox — demo SaaS" in html
    assert "Grantry (Acme)" in html
    assert "Read projects and tasks" in html
    assert "Create and change tasks" in html
    assert re.search(r'<button[^>]*name="allow"[^>]*>Authorize</button>', html)
    assert ">Deny</button>" in html
    assert "sandbox/sandbox.css" in html
    assert "css/grantry.css" not in html


def _consent_post(client: Any, client_id: Any, *, allow: Any) -> Any:
    page = client.get(_authorize_url(client_id, scope="read"))
    form = page.context["form"]
    data = {name: form[name].value() or "" for name in form.fields if name != "allow"}
    if allow:
        data["allow"] = "Authorize"
    return client.post(page.request["PATH_INFO"], data)


def test_authorize_button_redirects_with_a_code(alice_client: Client) -> None:
    client_id, _ = sandbox_client_register(name="Grantry", redirect_uris=[REDIRECT_URI])
    response = _consent_post(alice_client, client_id, allow=True)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response["Location"]).query)
    assert response["Location"].startswith(REDIRECT_URI)
    assert query["state"] == ["st"]
    assert query["code"][0]


def test_deny_button_redirects_with_access_denied(alice_client: Client) -> None:
    client_id, _ = sandbox_client_register(name="Grantry", redirect_uris=[REDIRECT_URI])
    response = _consent_post(alice_client, client_id, allow=False)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response["Location"]).query)
    assert query["error"] == ["access_denied"]
    assert "code" not in query


def test_unknown_client_shows_a_clear_error_page(alice_client: Client) -> None:
    response = alice_client.get(_authorize_url("no-such-client"))
    assert response.status_code == 400
    html = response.content.decode()
    assert "cannot be completed" in html
    assert "start connecting again" in html


def test_home_requires_login() -> None:
    response = Client().get("/sandbox/")
    assert response.status_code == 302
    assert urlsplit(response["Location"]).path == reverse("account_login")


@pytest.mark.usefixtures("alice")
def test_home_explains_and_lists_only_my_projects(alice_client: Client) -> None:
    other = UserFactory(email="other@sandbox.test")
    from apps.sandbox.models import Project

    Project.objects.create(owner=other, name="Other people's secret plan")
    alice_client.post("/sandbox/demo-data/")
    html = alice_client.get("/sandbox/").content.decode()
    assert "Sandbox — demo SaaS" in html
    assert "Website relaunch" in html
    assert "Write the welcome email" in html
    assert "Other people" not in html


@pytest.mark.usefixtures("alice")
def test_create_key_shows_it_once_and_it_works(alice_client: Client) -> None:
    response = alice_client.post("/sandbox/keys/", {"name": "demo key"})
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    key = re.search(r'value="(sbx_[^"]+)"', response.content.decode()).group(1)
    api = Client().get("/sandbox/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api.status_code == 200

    later = alice_client.get("/sandbox/").content.decode()
    assert key not in later
    assert f"sbx_…{key[-4:]}" in later
    assert "demo key" in later


def test_create_key_needs_a_name(alice_client: Client, alice: User) -> None:
    response = alice_client.post("/sandbox/keys/", {"name": "  "})
    assert response.status_code == 400
    assert "Give the key a name." in response.content.decode()
    assert not SandboxApiKey.objects.filter(user=alice).exists()


def test_revoke_key_from_the_page(alice_client: Client, alice: User) -> None:
    key = sandbox_api_key_create(user=alice, name="to revoke")
    row = SandboxApiKey.objects.get(user=alice)
    response = alice_client.post(f"/sandbox/keys/{row.pk}/revoke/", follow=True)
    assert response.status_code == 200
    assert "no longer works" in response.content.decode()
    assert Client().get("/sandbox/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 401


def test_cannot_revoke_someone_elses_key(alice_client: Client) -> None:
    bob = UserFactory(email="bob@sandbox.test")
    key = sandbox_api_key_create(user=bob, name="bob's")
    row = SandboxApiKey.objects.get(user=bob)
    assert alice_client.post(f"/sandbox/keys/{row.pk}/revoke/").status_code == 404
    row.refresh_from_db()
    assert row.revoked_at is None
    assert Client().get("/sandbox/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200


def test_pages_refuse_get_for_writes(alice_client: Client) -> None:
    assert alice_client.get("/sandbox/keys/").status_code == 405
    assert alice_client.get("/sandbox/demo-data/").status_code == 405


def test_admin_never_shows_key_or_digest(alice: User) -> None:
    key = sandbox_api_key_create(user=alice, name="admin-visible")
    row = SandboxApiKey.objects.get(user=alice)
    staff = UserFactory(email="root@sandbox.test")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    client = Client()
    client.force_login(staff)
    pages = [
        client.get("/admin/sandbox/sandboxapikey/"),
        client.get(f"/admin/sandbox/sandboxapikey/{row.pk}/change/"),
        client.get("/admin/sandbox/project/"),
        client.get("/admin/sandbox/task/"),
    ]
    for page in pages:
        assert page.status_code == 200
        html = page.content.decode()
        assert key not in html
        assert row.key_digest not in html
    assert f"sbx_…{row.last4}" in pages[1].content.decode()
    assert client.get("/admin/sandbox/sandboxapikey/add/").status_code == 403


def test_oauth_admin_screens_do_not_show_tokens_or_client_secrets(alice: User) -> None:
    from oauth2_provider.models import get_access_token_model, get_refresh_token_model

    from apps.sandbox.services import sandbox_tokens_issue

    client_id, secret = sandbox_client_register(name="App", redirect_uris=[REDIRECT_URI])
    issued = sandbox_tokens_issue(client_id=client_id, user=alice)
    access = get_access_token_model().objects.get()
    refresh = get_refresh_token_model().objects.get()
    application = access.application
    staff = UserFactory(email="root@sandbox.test")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    client = Client()
    client.force_login(staff)
    urls = [
        "/admin/oauth2_provider/application/",
        f"/admin/oauth2_provider/application/{access.application_id}/change/",
        "/admin/oauth2_provider/accesstoken/",
        f"/admin/oauth2_provider/accesstoken/{access.pk}/change/",
        "/admin/oauth2_provider/refreshtoken/",
        f"/admin/oauth2_provider/refreshtoken/{refresh.pk}/change/",
    ]
    for url in urls:
        page = client.get(url)
        assert page.status_code == 200, url
        html = page.content.decode()
        for value in (
            secret,
            application.client_secret,
            issued["access_token"],
            issued["refresh_token"],
        ):
            assert value not in html, url
    assert client.get("/admin/oauth2_provider/application/add/").status_code == 403
