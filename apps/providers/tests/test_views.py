"""Dashboard pages: members read, admins write, other organizations see nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.organizations.models import Organization
from apps.providers.models import CustomAction, CustomProvider, ImportStatus, OpenAPIImport

pytestmark = pytest.mark.django_db

FORM = {
    "display_name": "Acme CRM",
    "slug": "crm",
    "description": "Our CRM.",
    "auth_type": "api_key",
    "api_base_url": "https://crm.example.com/api",
    "authorize_url": "",
    "token_url": "",
    "revocation_url": "",
    "userinfo_url": "https://crm.example.com/api/me",
    "userinfo_account_field": "email",
    "default_scopes": "items.read, items.write",
    "placement": "header",
    "header_name": "X-Api-Key",
    "header_prefix": "",
}


def url(url_name: Any, org_slug: str = "acme", **kwargs: Any) -> Any:
    return reverse(f"providers:{url_name}", kwargs={"org_slug": org_slug, **kwargs})


@pytest.mark.usefixtures("crm")
def test_members_browse_the_catalog(client: Client, member: User) -> None:
    client.force_login(member)
    page = client.get(url("catalog"))
    assert page.status_code == 200
    html = page.content.decode()
    for name in (
        "github.create_issue",
        "sandbox.list_tasks",
        "custom-crm.get_item",
        "slack.post_message",
    ):
        assert name in html
    assert "Define a custom provider" not in html  # members do not manage

    calendar = client.get(url("catalog"), {"q": "calendar", "class": "write"}).content.decode()
    assert "google.calendar_create_event" in calendar
    assert "google.calendar_list_events" not in calendar
    assert "github.update_issue" not in calendar
    assert "slack.post_message" not in calendar

    detail = client.get(url("detail", key="sandbox"))
    assert detail.status_code == 200
    assert "sandbox.create_task" in detail.content.decode()
    assert "&quot;additionalProperties&quot;: false" in detail.content.decode()
    assert client.get(url("detail", key="custom-crm")).status_code == 200
    assert client.get(url("detail", key="nope")).status_code == 404


@pytest.mark.usefixtures("org")
def test_anonymous_users_are_sent_to_log_in(client: Client) -> None:
    response = client.get(url("catalog"))
    assert response.status_code == 302
    assert reverse("account_login") in response["Location"]


def test_other_organizations_see_nothing(
    client: Client, outsider: User, crm: CustomProvider
) -> None:
    client.force_login(outsider)
    # Not a member of acme: every acme page is a 404.
    assert client.get(url("catalog")).status_code == 404
    assert client.get(url("detail", key="custom-crm")).status_code == 404
    # In its own organization the custom provider of acme does not exist.
    own = client.get(url("catalog", org_slug="globex"))
    assert own.status_code == 200
    assert "custom-crm" not in own.content.decode()
    assert client.get(url("detail", org_slug="globex", key="custom-crm")).status_code == 404
    for name, kwargs in [
        ("custom_edit", {"slug": "crm"}),
        ("custom_delete", {"slug": "crm"}),
        ("custom_action_create", {"slug": "crm"}),
        ("custom_action_delete", {"slug": "crm", "name": "get_item"}),
    ]:
        assert client.get(url(name, org_slug="globex", **kwargs)).status_code == 404
        assert client.post(url(name, org_slug="globex", **kwargs)).status_code == 404
        assert client.post(url(name, **kwargs)).status_code == 404
    assert CustomProvider.objects.filter(pk=crm.pk).exists()
    assert CustomAction.objects.filter(provider=crm).count() == 1


@pytest.mark.parametrize("role", ["member", "reviewer"])
@pytest.mark.usefixtures("crm")
def test_members_and_reviewers_cannot_write(
    client: Client, request: pytest.FixtureRequest, role: str
) -> None:
    client.force_login(request.getfixturevalue(role))
    pages = [
        ("custom_create", {}),
        ("custom_edit", {"slug": "crm"}),
        ("custom_delete", {"slug": "crm"}),
        ("custom_action_create", {"slug": "crm"}),
        ("custom_action_delete", {"slug": "crm", "name": "get_item"}),
    ]
    for name, kwargs in pages:
        assert client.get(url(name, **kwargs)).status_code == 403
        assert client.post(url(name, **kwargs), {**FORM, "slug": "x"}).status_code == 403
    assert CustomProvider.objects.count() == 1
    assert CustomAction.objects.count() == 1


def test_admin_creates_a_custom_provider(
    client: Client, admin: User, org: Organization, other_org: Organization
) -> None:
    client.force_login(admin)
    assert client.get(url("custom_create")).status_code == 200
    # An organization field in the form is ignored: the org comes from the URL.
    response = client.post(url("custom_create"), {**FORM, "organization": other_org.pk})
    assert response.status_code == 302
    assert response["Location"] == url("detail", key="custom-crm")
    provider = CustomProvider.objects.get()
    assert provider.organization == org
    assert provider.default_scopes == ["items.read", "items.write"]
    assert provider.created_by == admin
    assert (
        AuditEvent.objects.filter(action="provider.custom_created", organization=org).count() == 1
    )
    page = client.get(response["Location"]).content.decode()
    assert "X-Api-Key" in page
    assert "Add an action" in page


@override_settings(DEBUG=False, GRANTRY_EGRESS_ALLOW_LOOPBACK=False)
def test_invalid_provider_form_shows_errors_and_saves_nothing(client: Client, admin: User) -> None:
    client.force_login(admin)
    response = client.post(
        url("custom_create"),
        {
            **FORM,
            "auth_type": "oauth2",
            "api_base_url": "http://crm.example.com/api",
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Nothing was saved" in html
    assert "Use an https:// URL." in html
    assert "An OAuth 2.0 provider needs this URL." in html
    assert 'aria-invalid="true"' in html
    assert not CustomProvider.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="provider.").exists()


@pytest.mark.usefixtures("crm")
def test_duplicate_key_is_a_form_error(client: Client, admin: User) -> None:
    client.force_login(admin)
    response = client.post(url("custom_create"), FORM)
    assert response.status_code == 200
    assert "already has a custom provider" in response.content.decode()
    assert CustomProvider.objects.count() == 1


def test_admin_edits_but_cannot_rename(client: Client, admin: User, crm: CustomProvider) -> None:
    client.force_login(admin)
    form = client.get(url("custom_edit", slug="crm"))
    assert form.status_code == 200
    assert 'name="slug"' not in form.content.decode()
    response = client.post(
        url("custom_edit", slug="crm"), {**FORM, "slug": "renamed", "display_name": "CRM v2"}
    )
    assert response.status_code == 302
    crm.refresh_from_db()
    assert (crm.slug, crm.display_name) == ("crm", "CRM v2")
    event = AuditEvent.objects.get(action="provider.custom_updated")
    assert event.metadata["changes"]["display_name"] == ["Acme CRM", "CRM v2"]


def test_admin_adds_and_deletes_actions(client: Client, admin: User, crm: CustomProvider) -> None:
    client.force_login(admin)
    page = client.get(url("custom_action_create", slug="crm"))
    assert page.status_code == 200
    schema = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string", "description": "Item name."}},
    }
    response = client.post(
        url("custom_action_create", slug="crm"),
        {
            "name": "create_item",
            "description": "Create an item.",
            "action_class": "write",
            "method": "POST",
            "path": "/items",
            "input_schema": json.dumps(schema),
            "scopes": "items.write",
        },
    )
    assert response.status_code == 302
    action = crm.actions.get(name="create_item")
    assert action.scopes == ["items.write"]
    assert action.input_schema["additionalProperties"] is False

    bad = client.post(
        url("custom_action_create", slug="crm"),
        {
            "name": "broken",
            "description": "x",
            "action_class": "read",
            "method": "GET",
            "path": "/items/{item_id}",
            "input_schema": "{not json",
            "scopes": "",
        },
    )
    assert bad.status_code == 200
    assert "This is not valid JSON" in bad.content.decode()
    unrequired = client.post(
        url("custom_action_create", slug="crm"),
        {
            "name": "broken",
            "description": "x",
            "action_class": "read",
            "method": "GET",
            "path": "/items/{item_id}",
            "input_schema": json.dumps(schema),
            "scopes": "",
        },
    )
    assert unrequired.status_code == 200
    assert "Every path placeholder must be a required property" in unrequired.content.decode()
    assert not crm.actions.filter(name="broken").exists()

    confirm = client.get(url("custom_action_delete", slug="crm", name="create_item"))
    assert confirm.status_code == 200
    assert (
        client.post(url("custom_action_delete", slug="crm", name="create_item")).status_code == 302
    )
    assert not crm.actions.filter(name="create_item").exists()
    assert client.post(url("custom_action_delete", slug="crm", name="nope")).status_code == 404


@pytest.mark.usefixtures("crm")
def test_admin_deletes_a_provider(client: Client, admin: User) -> None:
    client.force_login(admin)
    assert client.get(url("custom_delete", slug="crm")).status_code == 200
    response = client.post(url("custom_delete", slug="crm"))
    assert response.status_code == 302
    assert not CustomProvider.objects.exists()
    assert AuditEvent.objects.filter(action="provider.custom_deleted").count() == 1


def test_every_providers_url_is_closed_to_outsiders(
    client: Client, outsider: User, crm: CustomProvider
) -> None:
    """Walks the app's URL patterns so a new page cannot forget the tenant boundary."""
    from apps.providers.urls import urlpatterns

    job = OpenAPIImport.objects.create(
        organization=crm.organization, provider=crm, status=ImportStatus.CHOOSING
    )
    client.force_login(outsider)
    values: dict[str, Any] = {"key": "custom-crm", "slug": "crm", "name": "get_item", "pk": job.pk}
    for pattern in urlpatterns:
        kwargs = {k: values[k] for k in pattern.pattern.converters}
        target = url(pattern.name, **kwargs)
        assert client.get(target).status_code == 404, target
        assert client.post(target).status_code == 404, target


def test_admin_site_lists_custom_providers_read_only(
    client: Client, org: Organization, crm: CustomProvider, other_org: Organization
) -> None:
    from tests.factories import UserFactory

    superuser = UserFactory(email="root@grantry.test", is_staff=True, is_superuser=True)
    client.force_login(superuser)
    listing = client.get(reverse("admin:providers_customprovider_changelist"))
    assert listing.status_code == 200
    assert "Acme CRM" in listing.content.decode()
    change_url = reverse("admin:providers_customprovider_change", args=[crm.pk])
    change = client.get(change_url)
    assert change.status_code == 200
    html = change.content.decode()
    assert "get_item" in html
    assert 'name="api_base_url"' not in html
    assert 'name="organization"' not in html

    # Changes go through the audited dashboard services, never the admin.
    moved = client.post(
        change_url,
        {**FORM, "organization": other_org.pk, "api_base_url": "https://evil.example.net"},
    )
    assert moved.status_code == 403
    crm.refresh_from_db()
    assert (crm.organization_id, crm.api_base_url) == (org.pk, "https://crm.example.com/api")
    added = client.post(
        reverse("admin:providers_customprovider_add"),
        {**FORM, "slug": "other", "organization": other_org.pk},
    )
    assert added.status_code == 403
    deleted = client.post(
        reverse("admin:providers_customprovider_delete", args=[crm.pk]), {"post": "yes"}
    )
    assert deleted.status_code == 403
    assert CustomProvider.objects.count() == 1


def test_edit_form_refuses_a_new_host_while_connections_are_live(
    client: Client, admin: User, org: Organization, crm: CustomProvider
) -> None:
    from apps.connections.models import Connection

    Connection.objects.create(
        organization=org, provider_key=crm.key, name="crm-prod", auth_type="api_key"
    )
    client.force_login(admin)
    response = client.post(
        url("custom_edit", slug="crm"),
        {**FORM, "api_base_url": "https://evil.example.net/api"},
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Nothing was saved" in html
    assert "crm-prod" in html
    assert "Disconnect them first" in html
    assert 'aria-invalid="true"' in html
    crm.refresh_from_db()
    assert crm.api_base_url == "https://crm.example.com/api"
    assert not AuditEvent.objects.filter(action="provider.custom_updated").exists()


def test_the_form_keeps_a_header_prefix_with_its_trailing_space(
    client: Client, admin: User
) -> None:
    client.force_login(admin)
    form = {**FORM, "header_name": "Authorization", "header_prefix": "Bot "}
    assert client.post(url("custom_create"), form).status_code == 302
    assert CustomProvider.objects.get().header_prefix == "Bot "
    edit = {**form, "header_prefix": "Token "}
    del edit["slug"]
    assert client.post(url("custom_edit", slug="crm"), edit).status_code == 302
    assert CustomProvider.objects.get().header_prefix == "Token "
