"""Custom providers: services validate before they write, and audit what they change."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import override_settings

from apps.audit.models import AuditEvent
from apps.organizations.models import Organization
from apps.providers.models import CustomAction, CustomProvider
from apps.providers.services import (
    custom_action_create,
    custom_action_delete,
    custom_provider_create,
    custom_provider_delete,
    custom_provider_update,
)

pytestmark = pytest.mark.django_db

GOOD = {
    "slug": "crm",
    "display_name": "Acme CRM",
    "auth_type": "oauth2",
    "api_base_url": "https://crm.example.com/api",
    "authorize_url": "https://crm.example.com/oauth/authorize",
    "token_url": "https://crm.example.com/oauth/token",
    "userinfo_url": "https://crm.example.com/api/me",
    "userinfo_account_field": "user.email",
    "default_scopes": ["items.read"],
}
SCHEMA = {
    "type": "object",
    "properties": {
        "item_id": {"type": "integer", "description": "Item id."},
        "verbose": {"type": "boolean", "description": "More detail."},
    },
    "required": ["item_id"],
}


def create(org: Organization, user: Any, **overrides: Any) -> CustomProvider:
    return custom_provider_create(organization=org, actor=user, **{**GOOD, **overrides})


def add_action(provider: Any, user: Any, **overrides: Any) -> CustomAction:
    fields = {
        "name": "get_item",
        "description": "Get one item.",
        "action_class": "read",
        "method": "GET",
        "path": "/items/{item_id}",
        "input_schema": SCHEMA,
        **overrides,
    }
    return custom_action_create(provider=provider, actor=user, **fields)


def test_create_update_delete_are_audited(org: Organization, admin: User) -> None:
    provider = create(org, admin)
    assert provider.key == "custom-crm"
    event = AuditEvent.objects.get(action="provider.custom_created")
    assert event.organization_id == org.pk
    assert event.actor_id == str(admin.pk)
    assert event.metadata["key"] == "custom-crm"
    assert event.provider == "custom-crm"  # reviewers filter the trail by provider

    custom_provider_update(
        provider=provider,
        actor=admin,
        changes={"display_name": "Acme CRM 2", "default_scopes": ["a", "b"]},
    )
    updated = AuditEvent.objects.get(action="provider.custom_updated")
    assert updated.metadata["changes"] == {
        "display_name": ["Acme CRM", "Acme CRM 2"],
        "default_scopes": [["items.read"], ["a", "b"]],
    }
    # No change, no event.
    custom_provider_update(provider=provider, actor=admin, changes={"display_name": "Acme CRM 2"})
    assert AuditEvent.objects.filter(action="provider.custom_updated").count() == 1

    action = add_action(provider, admin)
    assert AuditEvent.objects.get(action="provider.custom_action_created").metadata["action"] == (
        "custom-crm.get_item"
    )
    custom_action_delete(action=action, actor=admin)
    assert AuditEvent.objects.filter(action="provider.custom_action_deleted").count() == 1
    assert not CustomAction.objects.exists()

    custom_provider_delete(provider=provider, actor=admin)
    assert AuditEvent.objects.filter(action="provider.custom_deleted").count() == 1
    assert not CustomProvider.objects.exists()


def test_the_slug_cannot_be_changed(org: Organization, admin: User) -> None:
    provider = create(org, admin)
    with pytest.raises(ValidationError):
        custom_provider_update(provider=provider, actor=admin, changes={"slug": "other"})
    with pytest.raises(ValidationError):
        custom_provider_update(provider=provider, actor=admin, changes={"organization": None})
    provider.refresh_from_db()
    assert provider.slug == "crm"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"slug": "Not A Slug"}, "slug"),
        ({"slug": "-crm"}, "slug"),
        ({"api_base_url": "ftp://crm.example.com"}, "api_base_url"),
        ({"api_base_url": "https://user:pw@crm.example.com"}, "api_base_url"),
        ({"api_base_url": "https:///nohost"}, "api_base_url"),
        ({"token_url": ""}, "token_url"),
        ({"authorize_url": ""}, "authorize_url"),
        ({"userinfo_url": ""}, "userinfo_url"),
        ({"default_scopes": ["has space"]}, "default_scopes"),
        ({"placement": "query"}, "placement"),
        ({"placement": "header", "header_name": "Host"}, "header_name"),
        ({"auth_type": "password"}, "auth_type"),
    ],
)
def test_bad_providers_are_rejected_and_nothing_is_saved(
    org: Organization, admin: User, overrides: Any, field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        create(org, admin, **overrides)
    assert field in info.value.message_dict
    assert not CustomProvider.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="provider.").exists()


@override_settings(DEBUG=False, GRANTRY_EGRESS_ALLOW_LOOPBACK=False)
def test_http_urls_are_refused_in_production(org: Organization, admin: User) -> None:
    with pytest.raises(ValidationError) as info:
        create(org, admin, token_url="http://crm.example.com/oauth/token")
    assert info.value.message_dict["token_url"] == ["Use an https:// URL."]
    assert not CustomProvider.objects.exists()


@override_settings(DEBUG=False, GRANTRY_EGRESS_ALLOW_LOOPBACK=True)
def test_http_urls_are_allowed_for_local_development(org: Organization, admin: User) -> None:
    assert create(org, admin, api_base_url="http://127.0.0.1:9000/api").pk


def test_duplicate_slug_in_one_org_is_refused_but_other_orgs_may_reuse_it(
    org: Organization, other_org: Organization, admin: User, outsider: User
) -> None:
    create(org, admin)
    with pytest.raises(ValidationError) as info:
        create(org, admin, display_name="Again")
    assert "slug" in info.value.message_dict
    assert CustomProvider.objects.count() == 1
    assert create(other_org, outsider).organization == other_org


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "Get-Item"}, "name"),
        ({"method": "TRACE"}, "method"),
        ({"path": "items/{item_id}"}, "path"),
        ({"path": "/items/../{item_id}"}, "path"),
        ({"path": "/items/{item_id}?x=1"}, "path"),
        ({"path": "/items/{item-id}"}, "path"),
        ({"path": "/items/%2E%2e/{item_id}"}, "path"),
        ({"path": "/items/a%2fb/{item_id}"}, "path"),
        ({"path": "/items/{verbose}"}, "input_schema"),  # placeholder not required
        ({"path": "/items/{missing}"}, "input_schema"),
        ({"input_schema": {"type": "array"}}, "input_schema"),
        (
            {"input_schema": {"type": "object", "properties": {"a": {"type": "nope"}}}},
            "input_schema",
        ),
        ({"input_schema": ["not", "an", "object"]}, "input_schema"),
        (
            {
                "input_schema": {
                    "type": "object",
                    "properties": {"a": {"$ref": "https://evil.example.com/schema.json"}},
                }
            },
            "input_schema",
        ),
        ({"description": ""}, "description"),
        ({"action_class": "delete"}, "action_class"),
    ],
)
def test_bad_actions_are_rejected_and_nothing_is_saved(
    org: Organization, admin: User, overrides: Any, field: str
) -> None:
    provider = create(org, admin)
    with pytest.raises(ValidationError) as info:
        add_action(provider, admin, **overrides)
    assert field in info.value.message_dict, info.value.message_dict
    assert not CustomAction.objects.exists()
    assert not AuditEvent.objects.filter(action="provider.custom_action_created").exists()


def test_duplicate_action_name_is_refused(org: Organization, admin: User) -> None:
    provider = create(org, admin)
    add_action(provider, admin)
    with pytest.raises(ValidationError) as info:
        add_action(provider, admin, description="Again")
    assert "name" in info.value.message_dict
    assert provider.actions.count() == 1


def test_custom_action_becomes_a_catalog_action(org: Organization, admin: User) -> None:
    provider = create(org, admin)
    add_action(provider, admin)
    add_action(
        provider,
        admin,
        name="create_item",
        action_class="write",
        method="POST",
        path="/items",
        input_schema={
            "type": "object",
            "properties": {"name": {"type": "string", "description": "Name."}},
            "required": ["name"],
        },
    )
    from apps.providers.registry import build_request, get_action, get_provider

    catalog_provider = get_provider("custom-crm", organization=org)
    read = get_action("custom-crm.get_item", organization=org)
    prepared = build_request(catalog_provider, read, {"item_id": 4, "verbose": True})
    assert prepared.url == "https://crm.example.com/api/items/4"
    assert prepared.query == {"verbose": "true"}
    assert prepared.json_body is None
    write = get_action("custom-crm.create_item", organization=org)
    assert write.is_write
    assert write.is_custom
    prepared = build_request(catalog_provider, write, {"name": "x"})
    assert prepared.json_body == {"name": "x"}
    assert prepared.query == {}
    # additionalProperties defaults to false, like the built-ins.
    from apps.providers.registry import validate_input

    assert [e.path for e in validate_input(write, {"name": "x", "admin": True})] == ["/admin"]


def test_audit_failure_rolls_back_the_change(
    org: Organization, admin: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    import apps.providers.services as services

    def broken_audit(**kwargs: Any) -> None:
        raise RuntimeError("audit store down")

    monkeypatch.setattr(services, "audit_record", broken_audit)
    with pytest.raises(RuntimeError):
        create(org, admin)
    assert not CustomProvider.objects.exists()


def test_a_provider_with_live_connections_cannot_be_deleted(org: Organization, admin: User) -> None:
    from apps.connections.models import Connection

    provider = create(org, admin, auth_type="api_key", authorize_url="", token_url="")
    connection = Connection.objects.create(
        organization=org, provider_key=provider.key, name="crm", auth_type="api_key"
    )
    with pytest.raises(ValidationError) as info:
        custom_provider_delete(provider=provider, actor=admin)
    assert "Disconnect" in info.value.messages[0]
    assert CustomProvider.objects.filter(pk=provider.pk).exists()
    assert not AuditEvent.objects.filter(action="provider.custom_deleted").exists()

    Connection.objects.filter(pk=connection.pk).update(status="revoked")
    custom_provider_delete(provider=provider, actor=admin)
    assert not CustomProvider.objects.filter(pk=provider.pk).exists()


@pytest.mark.parametrize(
    "changes",
    [
        {"api_base_url": "https://evil.example.net/api"},
        {"userinfo_url": "https://evil.example.net/me"},
        {"revocation_url": "https://evil.example.net/revoke"},
        {"placement": "header", "header_name": "X-Api-Key", "header_prefix": ""},
        {"header_prefix": "Token "},
    ],
)
def test_credential_routing_is_frozen_while_connections_are_live(
    org: Organization, admin: User, changes: Any
) -> None:
    from apps.connections.models import Connection

    provider = create(org, admin, auth_type="api_key", authorize_url="", token_url="")
    connection = Connection.objects.create(
        organization=org, provider_key=provider.key, name="crm-prod", auth_type="api_key"
    )
    with pytest.raises(ValidationError) as info:
        custom_provider_update(provider=provider, actor=admin, changes=changes)
    changed = {f for f in changes if getattr(provider, f) != changes[f]}
    assert set(info.value.message_dict) == changed
    for messages in info.value.message_dict.values():
        assert "crm-prod" in messages[0]
        assert "Disconnect" in messages[0]
    stored = CustomProvider.objects.get(pk=provider.pk)
    assert all(getattr(stored, f) == getattr(provider, f) for f in changes)
    assert not AuditEvent.objects.filter(action="provider.custom_updated").exists()

    # Display fields stay editable while connections are live.
    custom_provider_update(
        provider=provider,
        actor=admin,
        changes={"display_name": "CRM 2", "description": "New.", "default_scopes": ["x"]},
    )
    assert CustomProvider.objects.get(pk=provider.pk).display_name == "CRM 2"

    # Once the only connection is revoked, the routing can change.
    Connection.objects.filter(pk=connection.pk).update(status="revoked")
    custom_provider_update(provider=provider, actor=admin, changes=changes)
    stored = CustomProvider.objects.get(pk=provider.pk)
    assert all(getattr(stored, f) == v for f, v in changes.items())


def test_connections_of_another_organization_do_not_freeze_a_provider(
    org: Organization, other_org: Organization, admin: User
) -> None:
    from apps.connections.models import Connection

    provider = create(org, admin, auth_type="api_key", authorize_url="", token_url="")
    Connection.objects.create(
        organization=other_org, provider_key=provider.key, name="theirs", auth_type="api_key"
    )
    custom_provider_update(
        provider=provider, actor=admin, changes={"api_base_url": "https://crm2.example.com/api"}
    )
    assert CustomProvider.objects.get(pk=provider.pk).api_base_url == (
        "https://crm2.example.com/api"
    )
