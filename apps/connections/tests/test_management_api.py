"""Management API: OAuth apps (write-only secret), API-key connections checked
with the provider before saving, and an OAuth connect started from the API and
finished in a browser — against the real Sandbox over HTTP (live_server)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.services import personal_token_mint
from apps.audit.models import AuditEvent
from apps.connections.models import Connection, OAuthState, ProviderApp
from apps.connections.services import provider_app_save
from apps.connections.tests.conftest import Sandbox, authorize, callback
from apps.organizations.models import Organization
from apps.providers.services import custom_provider_create
from apps.sandbox.services import sandbox_api_key_create

SECRET = "cs_live_0123456789abcdefSECRET"


def api(user: Any) -> Any:
    client = APIClient()
    client.force_login(user)
    return client


def token_api(user: Any, org: Organization) -> APIClient:
    _token, raw = personal_token_mint(user=user, organization=org, name="automation")
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}")


def fields_of(response: Any) -> Any:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"]["code"] == "invalid_input"
    return body["error"]["details"]["fields"]


# --- OAuth apps ---------------------------------------------------------------------


@pytest.mark.django_db
def test_oauth_app_secret_is_write_only(org: Organization, admin: User) -> None:
    url = "/api/v1/orgs/acme/provider-apps/github/"
    client = token_api(admin, org)
    missing = client.put(url, {"client_id": "Iv1.abc"}, format="json")
    assert "client_secret" in fields_of(missing)
    assert not ProviderApp.objects.exists()

    saved = client.put(url, {"client_id": "Iv1.abc", "client_secret": SECRET}, format="json")
    assert saved.status_code == 200, saved.content
    assert saved.json()["has_client_secret"] is True
    assert saved.json()["redirect_uri"].endswith("/oauth/callback/")
    app = ProviderApp.objects.get()
    assert app.client_secret == SECRET
    assert app.organization == org
    event = AuditEvent.objects.get(action="provider_app.created")
    assert event.metadata == {"client_id": "Iv1.abc", "secret_changed": True}

    # Leaving the secret out keeps it; nothing ever shows it.
    kept = client.put(url, {"client_id": "Iv1.def"}, format="json")
    assert kept.status_code == 200
    app.refresh_from_db()
    assert (app.client_id, app.client_secret) == ("Iv1.def", SECRET)
    for response in (saved, kept, client.get(url), client.get("/api/v1/orgs/acme/provider-apps/")):
        assert SECRET not in response.content.decode()
    assert not any(SECRET in json.dumps(e.metadata) for e in AuditEvent.objects.all())


@pytest.mark.django_db
@pytest.mark.usefixtures("admin")
def test_oauth_apps_are_for_admins_even_to_read(org: Organization, reviewer: User) -> None:
    provider_app_save(organization=org, provider_key="github", client_id="a", client_secret="b")
    assert api(reviewer).get("/api/v1/orgs/acme/provider-apps/").status_code == 403
    assert api(reviewer).get("/api/v1/orgs/acme/provider-apps/github/").status_code == 403
    response = api(reviewer).put(
        "/api/v1/orgs/acme/provider-apps/github/",
        {"client_id": "evil", "client_secret": "x"},
        format="json",
    )
    assert response.status_code == 403
    assert ProviderApp.objects.get().client_id == "a"


@pytest.mark.django_db
@pytest.mark.usefixtures("org")
def test_oauth_app_for_an_unknown_or_non_oauth_provider_is_404(admin: User) -> None:
    for key in ("no-such-provider", "openai"):
        response = api(admin).put(
            f"/api/v1/orgs/acme/provider-apps/{key}/",
            {"client_id": "a", "client_secret": "b"},
            format="json",
        )
        assert response.status_code == 404, key
    assert not ProviderApp.objects.exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("org")
def test_another_orgs_oauth_app_is_invisible(
    admin: User, other_org: Organization, outsider: User
) -> None:
    provider_app_save(
        organization=other_org, provider_key="github", client_id="theirs", client_secret="s"
    )
    assert api(admin).get("/api/v1/orgs/acme/provider-apps/github/").status_code == 404
    assert api(admin).get("/api/v1/orgs/acme/provider-apps/").json()["results"] == []
    assert token_api(outsider, other_org).get("/api/v1/orgs/acme/provider-apps/").status_code == 404


# --- API-key connections --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("sandbox")
def test_api_key_connection_is_checked_then_saved_and_never_returned(
    org: Organization, admin: User
) -> None:
    key = sandbox_api_key_create(user=admin, name="for grantry")
    response = token_api(admin, org).post(
        "/api/v1/orgs/acme/connections/api-key/",
        {"provider": "sandbox", "name": "sandbox-key", "api_key": key},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "sandbox-key"
    assert body["auth_type"] == "api_key"
    assert body["account_label"] == admin.email  # from the identity call
    assert key not in response.content.decode()
    connection = Connection.objects.get(name="sandbox-key")
    assert connection.api_key == key
    assert connection.organization == org
    assert AuditEvent.objects.filter(action="connection.created", connection_id=body["id"])


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("sandbox", "org")
def test_a_rejected_key_is_a_field_error_and_nothing_is_saved(admin: User) -> None:
    response = api(admin).post(
        "/api/v1/orgs/acme/connections/api-key/",
        {"provider": "sandbox", "name": "sandbox-key", "api_key": "sbx_not-a-real-key"},
        format="json",
    )
    fields = fields_of(response)
    assert "Nothing was saved" in fields["api_key"][0]
    assert "sbx_not-a-real-key" not in response.content.decode()
    assert not Connection.objects.exists()
    assert not AuditEvent.objects.filter(action="connection.created").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"provider": "nope", "name": "x", "api_key": "k"}, "provider"),
        ({"provider": "google", "name": "x", "api_key": "k"}, "provider"),  # OAuth only
        ({"provider": "openai", "name": "Bad Name!", "api_key": "k"}, "name"),
        ({"provider": "openai", "name": "ok"}, "api_key"),
        ({"name": "ok", "api_key": "k"}, "provider"),
    ],
)
@pytest.mark.usefixtures("org")
def test_api_key_bad_input_is_400_before_any_call(admin: User, body: Any, field: str) -> None:
    response = api(admin).post("/api/v1/orgs/acme/connections/api-key/", body, format="json")
    assert field in fields_of(response)
    assert not Connection.objects.exists()


@pytest.mark.django_db
def test_duplicate_connection_name_is_a_field_error(org: Organization, admin: User) -> None:
    Connection.objects.create(
        organization=org, provider_key="openai", name="main", auth_type="api_key"
    )
    response = api(admin).post(
        "/api/v1/orgs/acme/connections/api-key/",
        {"provider": "openai", "name": "main", "api_key": "sk-x"},
        format="json",
    )
    assert "already exists" in fields_of(response)["name"][0]
    assert Connection.objects.count() == 1


@pytest.mark.django_db
def test_unreachable_identity_endpoint_is_502_and_nothing_saved(
    org: Organization, admin: User
) -> None:
    custom_provider_create(
        organization=org,
        actor=admin,
        slug="down",
        display_name="Down",
        auth_type="api_key",
        api_base_url="https://down.invalid/api",
        userinfo_url="https://down.invalid/me",
    )
    response = api(admin).post(
        "/api/v1/orgs/acme/connections/api-key/",
        {"provider": "custom-down", "name": "down", "api_key": "k-123"},
        format="json",
    )
    assert response.status_code == 502, response.content
    assert response.json()["error"]["code"] == "provider_unreachable"
    assert not Connection.objects.exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("org")
def test_reviewer_cannot_connect(reviewer: User) -> None:
    for path in ("connections/api-key/", "connections/oauth/start/"):
        response = api(reviewer).post(
            f"/api/v1/orgs/acme/{path}",
            {"provider": "openai", "name": "x", "api_key": "k"},
            format="json",
        )
        assert response.status_code == 403, path
    assert not Connection.objects.exists()
    assert not OAuthState.objects.exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("org")
def test_another_org_cannot_connect_here(outsider: User, other_org: Organization) -> None:
    response = token_api(outsider, other_org).post(
        "/api/v1/orgs/acme/connections/api-key/",
        {"provider": "openai", "name": "x", "api_key": "k"},
        format="json",
    )
    assert response.status_code == 404
    assert not Connection.objects.exists()


# --- OAuth connect: started by the API, finished in a browser ---------------------------


@pytest.mark.django_db(transaction=True)
def test_oauth_start_with_a_token_then_consent_in_a_browser(
    sandbox: Sandbox, org: Organization, admin: User
) -> None:
    response = token_api(admin, org).post(
        "/api/v1/orgs/acme/connections/oauth/start/",
        {"provider": "sandbox", "name": "sandbox-main"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["authorization_url"].startswith(f"{sandbox.base_url}/sandbox/o/authorize/")
    assert body["expires_in"] == 600
    state = OAuthState.objects.get()
    assert state.session_digest == ""
    assert state.user == admin
    assert not Connection.objects.exists()

    browser = Client()
    browser.force_login(admin)  # the same person, signed in in a browser
    done = callback(browser, authorize(browser, body["authorization_url"]))
    assert done.status_code == 302, done.content.decode()[:2000]
    connection = Connection.objects.get(name="sandbox-main")
    assert connection.organization == org
    assert connection.created_by == admin
    listed = token_api(admin, org).get("/api/v1/orgs/acme/connections/").json()["results"]
    assert [c["name"] for c in listed] == ["sandbox-main"]
    assert connection.access_token not in json.dumps(listed)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("sandbox")
def test_an_api_started_connect_cannot_be_finished_by_someone_else(
    org: Organization, admin: User, owner: User
) -> None:
    body = (
        token_api(admin, org)
        .post(
            "/api/v1/orgs/acme/connections/oauth/start/",
            {"provider": "sandbox", "name": "sandbox-main"},
            format="json",
        )
        .json()
    )
    intruder = Client()
    intruder.force_login(owner)  # another admin of the same org, in their own browser
    response = callback(intruder, authorize(intruder, body["authorization_url"]))
    assert response.status_code == 400
    assert "not valid here" in response.content.decode()
    assert not Connection.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("sandbox", "org")
def test_a_session_started_connect_stays_bound_to_that_session(admin: User) -> None:
    session_api = api(admin)
    body = session_api.post(
        "/api/v1/orgs/acme/connections/oauth/start/",
        {"provider": "sandbox", "name": "sandbox-main"},
        format="json",
    ).json()
    assert OAuthState.objects.get().session_digest != ""
    other_browser = Client()
    other_browser.force_login(admin)  # same person, another session
    response = callback(other_browser, authorize(other_browser, body["authorization_url"]))
    assert response.status_code == 400
    assert not Connection.objects.exists()


@pytest.mark.django_db
def test_oauth_start_needs_the_oauth_app_and_a_good_body(org: Organization, admin: User) -> None:
    client = api(admin)
    url = "/api/v1/orgs/acme/connections/oauth/start/"
    no_app = client.post(url, {"provider": "github", "name": "gh"}, format="json")
    assert "OAuth app" in fields_of(no_app)["provider"][0]
    api_key_only = client.post(url, {"provider": "openai", "name": "x"}, format="json")
    assert "does not support OAuth" in fields_of(api_key_only)["provider"][0]
    assert "name" in fields_of(client.post(url, {"provider": "github"}, format="json"))
    provider_app_save(organization=org, provider_key="github", client_id="a", client_secret="b")
    bad_name = client.post(url, {"provider": "github", "name": "not ok!"}, format="json")
    assert "name" in fields_of(bad_name)
    provider_app_save(organization=org, provider_key="zendesk", client_id="a", client_secret="b")
    no_subdomain = client.post(url, {"provider": "zendesk", "name": "zd"}, format="json")
    assert "base_url_params.subdomain" in fields_of(no_subdomain)
    assert not OAuthState.objects.exists()
