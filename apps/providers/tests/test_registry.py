from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from pytest_django import DjangoAssertNumQueries

from apps.organizations.models import Organization
from apps.providers.models import CustomProvider
from apps.providers.registry import (
    UnknownAction,
    UnknownProvider,
    all_actions,
    all_providers,
    get_action,
    get_provider,
)
from apps.providers.services import (
    custom_action_create,
    custom_action_delete,
    custom_provider_create,
    custom_provider_delete,
    custom_provider_update,
)


def test_builtin_lookup() -> None:
    github = get_provider("github")
    assert github.api_base_url == "https://api.github.com"
    assert github.userinfo_url == "https://api.github.com/user"
    assert get_action("github.create_issue").method == "POST"
    assert github.action("create_issue") is get_action("github.create_issue")


@pytest.mark.parametrize("name", ["github", "github.", "github.nope", "nope.list", ".x", ""])
def test_unknown_actions(name: str) -> None:
    with pytest.raises(UnknownAction):
        get_action(name)


def test_unknown_provider_is_a_lookup_error() -> None:
    with pytest.raises(LookupError):
        get_provider("nope")
    with pytest.raises(UnknownProvider):
        get_provider("custom-nope")


def test_base_url_override_moves_api_and_identity_calls() -> None:
    with override_settings(GRANTRY_PROVIDER_URLS={"github": "https://ghe.example.com/api/v3/"}):
        github = get_provider("github")
        assert github.api_base_url == "https://ghe.example.com/api/v3/"
        assert github.userinfo_url == "https://ghe.example.com/api/v3/user"
        # OAuth URLs stay until overridden themselves.
        assert github.authorize_url == "https://github.com/login/oauth/authorize"
    assert get_provider("github").api_base_url == "https://api.github.com"


def test_oauth_url_overrides_with_dotted_keys_and_dicts() -> None:
    overrides = {
        "github.authorize_url": "https://ghe.example.com/login/oauth/authorize",
        "github.token_url": "https://ghe.example.com/login/oauth/access_token",
        "gitlab": {
            "api_base_url": "https://git.example.com/api/v4",
            "revocation_url": "https://git.example.com/oauth/revoke",
        },
    }
    with override_settings(GRANTRY_PROVIDER_URLS=overrides):
        github = get_provider("github")
        assert github.authorize_url == "https://ghe.example.com/login/oauth/authorize"
        assert github.token_url == "https://ghe.example.com/login/oauth/access_token"
        assert github.api_base_url == "https://api.github.com"
        gitlab = get_provider("gitlab")
        assert gitlab.api_base_url == "https://git.example.com/api/v4"
        assert gitlab.revocation_url == "https://git.example.com/oauth/revoke"
        assert gitlab.userinfo_url == "https://git.example.com/api/v4/user"
        assert gitlab.token_url == "https://gitlab.com/oauth/token"


def test_override_of_an_unknown_field_is_a_configuration_error() -> None:
    with (
        override_settings(GRANTRY_PROVIDER_URLS={"github.client_secret": "x"}),
        pytest.raises(ImproperlyConfigured, match="names no overridable URL field"),
    ):
        get_provider("github")


def test_sandbox_follows_settings_and_can_be_disabled() -> None:
    with override_settings(GRANTRY_SANDBOX_URL="http://127.0.0.1:1234/sandbox/"):
        assert get_provider("sandbox").token_url == "http://127.0.0.1:1234/sandbox/o/token/"
    with override_settings(GRANTRY_SANDBOX_ENABLED=False):
        with pytest.raises(UnknownProvider):
            get_provider("sandbox")
        assert "sandbox" not in {p.key for p in all_providers()}
    with override_settings(GRANTRY_PROVIDER_URLS={"sandbox": "http://127.0.0.1:5/api"}):
        assert get_provider("sandbox").api_base_url == "http://127.0.0.1:5/api"


@pytest.mark.django_db
@pytest.mark.usefixtures("crm")
def test_custom_provider_is_visible_only_to_its_organization(
    org: Organization, other_org: Organization
) -> None:
    provider = get_provider("custom-crm", organization=org)
    assert provider.is_custom
    assert provider.api_base_url == "https://crm.example.com/api"
    action = get_action("custom-crm.get_item", organization=org)
    assert action.input_schema["additionalProperties"] is False
    assert "custom-crm.get_item" in {a.name for a in all_actions(organization=org)}

    for organization in (other_org, None):
        with pytest.raises(UnknownProvider):
            get_provider("custom-crm", organization=organization)
        with pytest.raises(UnknownAction):
            get_action("custom-crm.get_item", organization=organization)
        assert "custom-crm" not in {p.key for p in all_providers(organization=organization)}
        assert "custom-crm.get_item" not in {a.name for a in all_actions(organization=organization)}


@pytest.mark.django_db
def test_builtins_are_found_before_custom_lookups(
    org: Organization, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    with django_assert_num_queries(0):
        get_action("sandbox.list_projects", organization=org)


@pytest.mark.django_db
def test_a_custom_provider_is_built_once_per_revision(
    crm: CustomProvider, org: Organization, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    first = get_provider("custom-crm", organization=org)
    with django_assert_num_queries(2):  # the revision only, once per lookup
        again = get_provider("custom-crm", organization=org)
        action = get_action("custom-crm.get_item", organization=org.pk)
    assert again is first
    assert action is first.action("custom-crm.get_item")
    other = custom_provider_create(
        organization=org,
        actor=None,
        slug="other",
        display_name="Other",
        auth_type="api_key",
        api_base_url="https://other.example.com",
    )
    assert get_provider("custom-other", organization=org).display_name == "Other"
    assert get_provider("custom-crm", organization=org) is first
    assert crm.pk != other.pk


@pytest.mark.django_db
def test_every_change_to_a_custom_provider_is_seen_by_the_next_lookup(
    crm: CustomProvider, org: Organization, admin: User
) -> None:
    get_action("custom-crm.get_item", organization=org)  # cached
    created = custom_action_create(
        provider=crm,
        actor=admin,
        name="list_items",
        description="List the items.",
        action_class="read",
        method="GET",
        path="/items",
        input_schema={"type": "object", "properties": {}},
    )
    assert get_action("custom-crm.list_items", organization=org).path == "/items"

    custom_action_delete(action=created, actor=admin)
    with pytest.raises(UnknownAction):
        get_action("custom-crm.list_items", organization=org)

    custom_provider_update(
        provider=crm, actor=admin, changes={"api_base_url": "https://crm2.example.com/api"}
    )
    assert get_provider("custom-crm", organization=org).api_base_url == (
        "https://crm2.example.com/api"
    )

    custom_provider_delete(provider=CustomProvider.objects.get(pk=crm.pk), actor=admin)
    with pytest.raises(UnknownProvider):
        get_provider("custom-crm", organization=org)


@pytest.mark.django_db
@pytest.mark.usefixtures("crm")
def test_a_cached_custom_provider_stays_in_its_organization(
    org: Organization, other_org: Organization, admin: User
) -> None:
    """Another organization with a provider of the same slug gets its own."""
    get_provider("custom-crm", organization=org)
    theirs = custom_provider_create(
        organization=other_org,
        actor=admin,
        slug="crm",
        display_name="Their CRM",
        auth_type="api_key",
        api_base_url="https://theirs.example.com",
    )
    assert get_provider("custom-crm", organization=other_org).display_name == "Their CRM"
    assert get_provider("custom-crm", organization=org).display_name == "Acme CRM"
    custom_provider_delete(provider=theirs, actor=admin)
    with pytest.raises(UnknownProvider):
        get_provider("custom-crm", organization=other_org.pk)
    assert get_provider("custom-crm", organization=org.pk).display_name == "Acme CRM"
