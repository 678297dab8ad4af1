from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pytest_django.fixtures import Settings

from apps.broker.tests.upstream import RecordingUpstream
from apps.organizations.models import Organization

CONNECTION_SECRET = "sbx_connection_secret_0123456789"


@pytest.fixture
def upstream(settings: Settings) -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as server:
        settings.GRANTRY_PROVIDER_URLS = {"sandbox": server.url}
        yield server


@dataclass
class Agent:
    organization: Any
    connection: Any
    role: Any
    worker: Any
    token: Any
    raw: str

    @property
    def headers(self) -> dict[str, Any]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.raw}"}


def make_agent(
    organization: Any,
    *,
    name: str = "bot",
    rules: list[dict[str, Any]] | None = None,
    connection_name: str = "sandbox",
    connection: Any = None,
) -> Agent:
    from apps.connections.models import Connection
    from apps.policies.services import role_create
    from apps.workers.services import token_mint, worker_create

    connection = connection or Connection.objects.create(
        organization=organization,
        provider_key="sandbox",
        name=connection_name,
        auth_type="api_key",
        api_key=CONNECTION_SECRET,
    )
    if rules is None:
        rules = [
            {
                "kind": "action",
                "provider_key": "sandbox",
                "action_pattern": "sandbox.list_projects",
            },
            {
                "kind": "action",
                "provider_key": "sandbox",
                "action_pattern": "sandbox.list_tasks",
                "constraints": [{"field": "project_id", "op": "one_of", "value": [1, 2]}],
            },
            {
                "kind": "proxy",
                "provider_key": "sandbox",
                "connection": connection.pk,
                "methods": ["GET"],
                "path_glob": "/projects/**",
            },
        ]
    role = role_create(organization=organization, name=f"{name}-role", rules=rules)
    worker = worker_create(organization=organization, name=name, default_role=role)
    token, raw = token_mint(worker=worker)
    return Agent(organization, connection, role, worker, token, raw)


@pytest.fixture
def agent(org: Organization) -> Agent:
    return make_agent(org)
