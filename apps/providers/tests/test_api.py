"""Management API for custom providers and actions: the dashboard's validation,
the frozen key, live-connection rules, roles, tenancy and audit."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from apps.accounts.services import personal_token_mint
from apps.audit.models import AuditEvent
from apps.connections.models import Connection
from apps.organizations.models import Organization
from apps.providers.models import CustomAction, CustomProvider
from apps.providers.registry import get_provider

pytestmark = pytest.mark.django_db

BASE = "/api/v1/orgs/acme/custom-providers/"
NEW = {
    "slug": "acme-crm",
    "display_name": "Acme CRM",
    "auth_type": "api_key",
    "api_base_url": "https://api.acme-crm.example/v1",
    "userinfo_url": "https://api.acme-crm.example/v1/me",
    "userinfo_account_field": "email",
    "default_scopes": ["read", "write"],
}
ACTION = {
    "name": "get_contact",
    "description": "Fetch one contact by id.",
    "action_class": "read",
    "method": "GET",
    "path": "/contacts/{contact_id}",
    "input_schema": {
        "type": "object",
        "properties": {"contact_id": {"type": "integer", "description": "Contact id."}},
        "required": ["contact_id"],
        "additionalProperties": False,
    },
}


def api(user: Any) -> Any:
    client = APIClient()
    client.force_login(user)
    return client


def fields_of(response: Any) -> Any:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"]["code"] == "invalid_input"
    return body["error"]["details"]["fields"]


def test_admin_creates_a_provider_and_an_action_that_reach_the_catalog(
    org: Organization, admin: User
) -> None:
    created = api(admin).post(BASE, NEW, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["key"] == "custom-acme-crm"
    assert body["default_scopes"] == ["read", "write"]
    action = api(admin).post(f"{BASE}acme-crm/actions/", ACTION, format="json")
    assert action.status_code == 201, action.content
    assert action.json()["full_name"] == "custom-acme-crm.get_contact"
    provider = get_provider("custom-acme-crm", organization=org)
    assert [a.name for a in provider.actions] == ["custom-acme-crm.get_contact"]
    assert AuditEvent.objects.filter(action="provider.custom_created").count() == 1
    assert AuditEvent.objects.filter(action="provider.custom_action_created").count() == 1
    detail = api(admin).get(f"{BASE}acme-crm/").json()
    assert [a["name"] for a in detail["actions"]] == ["get_contact"]


def test_reviewer_reads_with_a_token_but_cannot_write(
    org: Organization, admin: User, reviewer: User
) -> None:
    api(admin).post(BASE, NEW, format="json")
    _token, raw = personal_token_mint(user=reviewer, organization=org, name="ro")
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}")
    listing = client.get(BASE)
    assert listing.status_code == 200
    assert [p["key"] for p in listing.json()["results"]] == ["custom-acme-crm"]
    assert client.post(BASE, {**NEW, "slug": "other"}, format="json").status_code == 403
    assert client.patch(f"{BASE}acme-crm/", {"display_name": "X"}, format="json").status_code == 403
    assert client.delete(f"{BASE}acme-crm/").status_code == 403
    assert client.post(f"{BASE}acme-crm/actions/", ACTION, format="json").status_code == 403
    assert CustomProvider.objects.get().display_name == "Acme CRM"
    assert not CustomAction.objects.exists()


@pytest.mark.usefixtures("org")
def test_member_cannot_even_read(member: User) -> None:
    assert api(member).get(BASE).status_code == 403


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"slug": "Bad Slug!"}, "slug"),
        ({"api_base_url": "ftp://files.example"}, "api_base_url"),
        ({"auth_type": "oauth2"}, "authorize_url"),  # OAuth needs authorize and token URLs
        ({"auth_type": "magic"}, "auth_type"),
        ({"userinfo_url": ""}, "userinfo_url"),  # an account field needs the identity URL
        ({"display_name": ""}, "display_name"),
    ],
)
@pytest.mark.usefixtures("org")
def test_bad_provider_input_is_refused_like_the_dashboard(
    admin: User, overrides: Any, field: str
) -> None:
    response = api(admin).post(BASE, {**NEW, **overrides}, format="json")
    assert field in fields_of(response)
    assert not CustomProvider.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="provider.").exists()


@pytest.mark.usefixtures("org")
def test_duplicate_slug_is_a_field_error(admin: User) -> None:
    api(admin).post(BASE, NEW, format="json")
    response = api(admin).post(BASE, NEW, format="json")
    assert "slug" in fields_of(response)
    assert CustomProvider.objects.count() == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"path": "/contacts/{missing}"}, None),  # a placeholder that is not required
        ({"input_schema": {"type": "string"}}, "input_schema"),
        ({"method": "BREW"}, "method"),
        ({"action_class": "delete"}, "action_class"),
        ({"name": "Bad Name"}, "name"),
    ],
)
@pytest.mark.usefixtures("org")
def test_bad_action_input_is_refused_and_nothing_saved(
    admin: User, overrides: Any, field: Any
) -> None:
    api(admin).post(BASE, NEW, format="json")
    response = api(admin).post(f"{BASE}acme-crm/actions/", {**ACTION, **overrides}, format="json")
    fields = fields_of(response)
    if field:
        assert field in fields
    assert not CustomAction.objects.exists()


@pytest.mark.usefixtures("org")
def test_patch_changes_only_what_it_names_and_the_key_never_changes(admin: User) -> None:
    api(admin).post(BASE, NEW, format="json")
    response = api(admin).patch(
        f"{BASE}acme-crm/", {"description": "Our CRM.", "default_scopes": ["read"]}, format="json"
    )
    assert response.status_code == 200, response.content
    stored = CustomProvider.objects.get()
    assert (stored.description, stored.default_scopes) == ("Our CRM.", ["read"])
    assert stored.api_base_url == NEW["api_base_url"]
    event = AuditEvent.objects.get(action="provider.custom_updated")
    assert set(event.metadata["changes"]) == {"description", "default_scopes"}

    renamed = api(admin).patch(f"{BASE}acme-crm/", {"slug": "crm2"}, format="json")
    assert "slug" in fields_of(renamed)
    assert CustomProvider.objects.get().slug == "acme-crm"


def test_routing_is_frozen_and_delete_refused_while_connections_are_live(
    org: Organization, admin: User
) -> None:
    api(admin).post(BASE, NEW, format="json")
    Connection.objects.create(
        organization=org, provider_key="custom-acme-crm", name="crm-prod", auth_type="api_key"
    )
    moved = api(admin).patch(
        f"{BASE}acme-crm/", {"api_base_url": "https://evil.example.net/"}, format="json"
    )
    assert "crm-prod" in fields_of(moved)["api_base_url"][0]
    assert CustomProvider.objects.get().api_base_url == NEW["api_base_url"]
    deleted = api(admin).delete(f"{BASE}acme-crm/")
    assert deleted.status_code == 409
    assert deleted.json()["error"]["code"] == "conflict"
    assert CustomProvider.objects.exists()


@pytest.mark.usefixtures("org")
def test_delete_action_then_provider(admin: User) -> None:
    api(admin).post(BASE, NEW, format="json")
    api(admin).post(f"{BASE}acme-crm/actions/", ACTION, format="json")
    assert api(admin).get(f"{BASE}acme-crm/actions/get_contact/").status_code == 200
    assert api(admin).delete(f"{BASE}acme-crm/actions/get_contact/").status_code == 204
    assert not CustomAction.objects.exists()
    assert api(admin).delete(f"{BASE}acme-crm/").status_code == 204
    assert not CustomProvider.objects.exists()
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"provider.custom_action_deleted", "provider.custom_deleted"} <= actions


def test_another_orgs_provider_is_404_and_the_org_never_comes_from_the_body(
    org: Organization, admin: User, other_org: Organization, outsider: User
) -> None:
    api(outsider).post("/api/v1/orgs/globex/custom-providers/", NEW, format="json")
    theirs = CustomProvider.objects.get(organization=other_org)
    client = api(admin)
    assert client.get(f"{BASE}acme-crm/").status_code == 404
    assert client.patch(f"{BASE}acme-crm/", {"display_name": "x"}, format="json").status_code == 404
    assert client.delete(f"{BASE}acme-crm/").status_code == 404
    assert client.post(f"{BASE}acme-crm/actions/", ACTION, format="json").status_code == 404
    assert api(outsider).get(BASE).status_code == 404
    created = client.post(
        BASE, {**NEW, "slug": "mine", "organization": other_org.pk}, format="json"
    )
    assert created.status_code == 201
    assert CustomProvider.objects.get(slug="mine").organization == org
    theirs.refresh_from_db()
    assert theirs.display_name == "Acme CRM"


def test_a_header_prefix_keeps_its_trailing_space(org: Organization, admin: User) -> None:
    """Discord's "Bot " prefix: trimmed, the upstream received `Authorization: BotTOKEN`."""
    from apps.connections.custody import place_credential

    client = api(admin)
    created = client.post(
        BASE,
        {**NEW, "placement": "header", "header_name": "Authorization", "header_prefix": "Bot "},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["header_prefix"] == "Bot "
    provider = get_provider("custom-acme-crm", organization=org)
    assert place_credential(provider, "TOKEN").headers == {"Authorization": "Bot TOKEN"}
    changed = client.patch(f"{BASE}acme-crm/", {"header_prefix": "Token "}, format="json")
    assert changed.status_code == 200, changed.content
    assert CustomProvider.objects.get().header_prefix == "Token "
