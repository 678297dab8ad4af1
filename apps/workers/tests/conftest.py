"""Fixtures for worker and token tests: a role, a worker, and a minted token."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.organizations.models import Organization
from apps.policies.models import Role, Rule
from apps.workers.models import Worker, WorkerToken
from apps.workers.services import token_mint, worker_create


def make_role(organization: Any, name: str = "reader", rules: Any = ()) -> Any:
    role = Role.objects.create(organization=organization, name=name)
    for values in rules:
        Rule.objects.create(role=role, **values)
    return role


@pytest.fixture
def role(org: Organization) -> Any:
    return make_role(
        org,
        "sandbox-reader",
        rules=[
            {"provider_key": "sandbox", "action_pattern": "sandbox.*", "action_class": "read"},
            {"provider_key": "sandbox", "action_pattern": "sandbox.create_task"},
        ],
    )


@pytest.fixture
def worker(org: Organization, role: Any, admin: User) -> Worker:
    return worker_create(
        organization=org, name="agent-one", default_role=role, owner=admin, actor=admin
    )


@pytest.fixture
def minted(worker: Worker, admin: User) -> tuple[WorkerToken, str]:
    """(token, raw) — the raw value as an agent would hold it."""
    return token_mint(worker=worker, actor=admin)
