"""A custom provider is a first-class provider: an admin defines it, connects an API
key (checked with its identity call), and its action reaches the upstream through
custody and egress. The upstream is the real Sandbox API on live_server."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from pytest_django.live_server_helper import LiveServer

from apps.connections import credentials
from apps.connections.services import CredentialRejected, connection_create_api_key
from apps.core.egress import egress_request
from apps.organizations.models import Organization
from apps.providers.models import CustomProvider
from apps.providers.registry import build_request, get_action, get_provider
from apps.providers.services import custom_action_create, custom_provider_create
from apps.sandbox.services import sandbox_api_key_create, sandbox_project_create


@pytest.fixture
def tasks_provider(
    live_server: LiveServer,
    org: Organization,
    admin: User,
    transactional_db: None,  # noqa: ARG001 - database access
) -> CustomProvider:
    provider = custom_provider_create(
        organization=org,
        actor=admin,
        slug="tasks",
        display_name="Tasks (via Sandbox)",
        auth_type="api_key",
        api_base_url=f"{live_server.url}/sandbox/api/v1",
        userinfo_url=f"{live_server.url}/sandbox/api/v1/me",
        userinfo_account_field="username",
        placement="bearer",
    )
    custom_action_create(
        provider=provider,
        actor=admin,
        name="list_projects",
        description="List the account's projects.",
        action_class="read",
        method="GET",
        path="/projects",
        input_schema={"type": "object", "properties": {}},
    )
    return provider


@pytest.mark.usefixtures("tasks_provider")
def test_custom_provider_connects_and_calls_upstream(org: Organization, admin: User) -> None:
    sandbox_project_create(owner=admin, name="Custom path")
    key = sandbox_api_key_create(user=admin, name="custom provider")

    with pytest.raises(CredentialRejected):
        connection_create_api_key(
            organization=org,
            provider_key="custom-tasks",
            name="bad-key",
            api_key="sbx_wrong",
            actor=admin,
        )
    assert not org.connections.filter(name="bad-key").exists()

    connection = connection_create_api_key(
        organization=org,
        provider_key="custom-tasks",
        name="tasks",
        api_key=key,
        actor=admin,
    )
    assert connection.account_label == admin.username

    provider = get_provider("custom-tasks", organization=org)
    action = get_action("custom-tasks.list_projects", organization=org)
    prepared = build_request(provider, action, {})
    applied = credentials.auth_for(connection, provider)
    response = egress_request(
        prepared.method,
        prepared.url,
        headers={**prepared.headers, **applied.headers},
        params={**prepared.query, **applied.params},
    )
    assert response.status_code == 200
    names = [p["name"] for p in json.loads(response.content)["projects"]]
    assert "Custom path" in names


@pytest.mark.usefixtures("tasks_provider")
def test_another_org_cannot_connect_the_custom_provider(
    other_org: Organization, outsider: User, admin: User
) -> None:
    key = sandbox_api_key_create(user=admin, name="stolen")
    with pytest.raises(LookupError):
        connection_create_api_key(
            organization=other_org,
            provider_key="custom-tasks",
            name="tasks",
            api_key=key,
            actor=outsider,
        )
    assert not other_org.connections.exists()
