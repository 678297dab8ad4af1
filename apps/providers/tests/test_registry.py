from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from pytest_django import DjangoAssertNumQueries

from apps.organizations.models import Organization
from apps.providers.registry import (
    UnknownAction,
    UnknownProvider,
    all_actions,
    all_providers,
    get_action,
    get_provider,
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
