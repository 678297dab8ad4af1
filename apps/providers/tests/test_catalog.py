"""The built-in catalog is well-formed: these properties are what the broker, the
policies and the MCP tool list rely on."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import override_settings
from jsonschema import Draft202012Validator

from apps.providers.calls import BODYLESS_METHODS
from apps.providers.catalog import ActionClass, AuthType
from apps.providers.definitions import BUILTIN_PROVIDERS
from apps.providers.definitions.sandbox import sandbox_provider
from apps.providers.registry import all_actions, all_providers, get_provider

ACTIONS = [a for p in BUILTIN_PROVIDERS for a in p.actions] + list(
    sandbox_provider("https://sandbox.test").actions
)
ACTION_IDS = [a.name for a in ACTIONS]
# What OpenAI/Anthropic tool-calling accepts as a property name.
TOOL_PROPERTY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _template_refs(node: Any) -> Any:
    if isinstance(node, str):
        if node == "$input":
            return {"*"}
        if node.startswith("$input."):
            return {node[len("$input.") :]}
        return set()
    if isinstance(node, dict):
        return set().union(set(), *(_template_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(set(), *(_template_refs(v) for v in node))
    return set()


def test_at_least_15_providers_and_60_actions() -> None:
    providers = all_providers()
    actions = all_actions()
    assert len(providers) >= 12, [p.key for p in providers]
    assert len(actions) >= 60, len(actions)
    # The sandbox is enabled in tests and counts too; without it the bar still holds.
    assert len(BUILTIN_PROVIDERS) >= 15
    assert sum(len(p.actions) for p in BUILTIN_PROVIDERS) >= 60


def test_action_names_are_unique_dotted_and_belong_to_their_provider() -> None:
    names = [a.name for p in all_providers() for a in p.actions]
    assert len(names) == len(set(names))
    for provider in all_providers():
        for action in provider.actions:
            assert re.fullmatch(r"[a-z0-9-]+\.[a-z][a-z0-9_]*", action.name), action.name
            assert action.provider_key == provider.key


def test_provider_keys_are_unique_and_never_in_the_custom_namespace() -> None:
    keys = [p.key for p in all_providers()]
    assert len(keys) == len(set(keys))
    assert not [k for k in keys if k.startswith("custom-")]


@pytest.mark.parametrize("action", ACTIONS, ids=ACTION_IDS)
def test_input_schema_is_a_closed_draft_2020_12_object(action: Any) -> None:
    schema = action.input_schema
    Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) <= set(schema["properties"])
    for name, prop in schema["properties"].items():
        assert TOOL_PROPERTY.match(name), name
        assert prop.get("description", "").strip(), f"{action.name}.{name} has no description"
    assert len(action.description) >= 15
    assert action.action_class in (ActionClass.READ, ActionClass.WRITE)
    assert action.method in ("GET", "POST", "PUT", "PATCH", "DELETE")
    assert action.path.startswith("/")


@pytest.mark.parametrize("action", ACTIONS, ids=ACTION_IDS)
def test_path_placeholders_are_required_properties(action: Any) -> None:
    required = set(action.input_schema["required"])
    for placeholder in action.path_params:
        assert placeholder in action.input_schema["properties"]
        assert placeholder in required, f"{action.name}: {{{placeholder}}} is optional"


@pytest.mark.parametrize("action", ACTIONS, ids=ACTION_IDS)
def test_every_input_property_reaches_the_request(action: Any) -> None:
    properties = set(action.input_schema["properties"])
    path = set(action.path_params)
    query = set(action.query_params)
    assert query <= properties
    rest = properties - path - query
    if action.method in BODYLESS_METHODS:
        assert not rest, f"{action.name}: {sorted(rest)} would be dropped"
        return
    if action.body_template is not None:
        refs = _template_refs(action.body_template)
        assert refs - {"*"} <= properties, f"{action.name} template names unknown input"
        if "*" not in refs:
            assert rest <= refs, f"{action.name}: {sorted(rest - refs)} would be dropped"


def test_provider_urls_are_https_and_oauth_providers_have_endpoints() -> None:
    for provider in BUILTIN_PROVIDERS:
        for url in (
            provider.api_base_url,
            provider.authorize_url,
            provider.token_url,
            provider.revocation_url,
            provider.userinfo_url,
        ):
            if url and not url.startswith("/"):
                assert urlsplit(url).scheme == "https", (provider.key, url)
        if AuthType.OAUTH2 in provider.auth_types:
            assert provider.authorize_url, provider.key
            assert provider.token_url, provider.key
        assert provider.auth_types, provider.key
        placeholders = set(re.findall(r"\{(\w+)\}", provider.api_base_url))
        assert placeholders == set(provider.base_url_params), provider.key


def test_both_read_and_write_actions_exist_for_most_providers() -> None:
    mixed = [
        p.key
        for p in BUILTIN_PROVIDERS
        if {a.action_class for a in p.actions} == {ActionClass.READ, ActionClass.WRITE}
    ]
    assert len(mixed) >= 12


@override_settings(
    GRANTRY_SANDBOX_URL="http://127.0.0.1:9999/sandbox", GRANTRY_SANDBOX_ENABLED=True
)
def test_sandbox_matches_its_contract() -> None:
    sandbox = get_provider("sandbox")
    base = "http://127.0.0.1:9999/sandbox"
    assert sandbox.authorize_url == f"{base}/o/authorize/"
    assert sandbox.token_url == f"{base}/o/token/"
    assert sandbox.revocation_url == f"{base}/o/revoke_token/"
    assert sandbox.userinfo_url == f"{base}/api/v1/me"
    assert sandbox.userinfo_account_field == "username"
    assert sandbox.api_base_url == f"{base}/api/v1"
    assert set(sandbox.auth_types) == {AuthType.OAUTH2, AuthType.API_KEY}
    assert sandbox.placement == "bearer"
    expected = {
        "list_projects": ("GET", "/projects", "read"),
        "create_project": ("POST", "/projects", "write"),
        "list_tasks": ("GET", "/projects/{project_id}/tasks", "read"),
        "get_task": ("GET", "/tasks/{task_id}", "read"),
        "create_task": ("POST", "/projects/{project_id}/tasks", "write"),
        "update_task": ("PATCH", "/tasks/{task_id}", "write"),
        "delete_task": ("DELETE", "/tasks/{task_id}", "write"),
    }
    got = {a.short_name: (a.method, a.path, a.action_class.value) for a in sandbox.actions}
    assert got == expected
    for action in sandbox.actions:
        assert action.scopes == (action.action_class.value,)
        for key in action.path_params:
            assert action.input_schema["properties"][key]["type"] == "integer"
    priority = sandbox.action("create_task").input_schema["properties"]["priority"]
    assert (priority["minimum"], priority["maximum"]) == (1, 5)


def test_airtable_matches_its_public_api() -> None:
    airtable = get_provider("airtable")
    assert airtable.api_base_url == "https://api.airtable.com/v0"
    assert airtable.authorize_url == "https://airtable.com/oauth2/v1/authorize"
    assert airtable.token_url == "https://airtable.com/oauth2/v1/token"
    assert airtable.userinfo_url == "https://api.airtable.com/v0/meta/whoami"
    assert set(airtable.auth_types) == {AuthType.OAUTH2, AuthType.API_KEY}
    assert airtable.placement == "bearer"
    assert airtable.revocation_url == ""  # Airtable documents none
    got = {a.short_name: (a.method, a.path, a.action_class.value) for a in airtable.actions}
    assert got == {
        "list_bases": ("GET", "/meta/bases", "read"),
        "get_base_schema": ("GET", "/meta/bases/{base_id}/tables", "read"),
        "list_records": ("GET", "/{base_id}/{table}", "read"),
        "get_record": ("GET", "/{base_id}/{table}/{record_id}", "read"),
        "create_record": ("POST", "/{base_id}/{table}", "write"),
        "update_record": ("PATCH", "/{base_id}/{table}/{record_id}", "write"),
        "delete_record": ("DELETE", "/{base_id}/{table}/{record_id}", "write"),
        "list_comments": ("GET", "/{base_id}/{table}/{record_id}/comments", "read"),
        "create_comment": ("POST", "/{base_id}/{table}/{record_id}/comments", "write"),
    }
    for action in airtable.actions:
        assert set(action.scopes) <= set(airtable.default_scopes), action.name
