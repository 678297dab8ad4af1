"""The demo worker and role: created through the real services, idempotent,
and the role is limited to the Sandbox."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from apps.dashboard.demo_worker import DEMO_ROLE, DEMO_WORKER, seed_demo_worker
from apps.organizations.models import Organization
from apps.policies.models import Role
from apps.workers.models import Worker
from apps.workers.services import token_mint

pytestmark = pytest.mark.django_db


def test_demo_worker_is_seeded_once_and_its_token_works(org: Organization, owner: User) -> None:
    seed_demo_worker(organization=org, user=owner)
    seed_demo_worker(organization=org, user=owner)
    worker = Worker.objects.get(organization=org, name=DEMO_WORKER)
    role = Role.objects.get(organization=org, name=DEMO_ROLE)
    assert worker.default_role == role
    assert {rule.provider_key for rule in role.rules.all()} == {"sandbox"}
    _, raw = token_mint(worker=worker, actor=owner)
    body = APIClient().get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {raw}").json()
    assert body["worker"]["name"] == DEMO_WORKER
    assert body["role"]["name"] == DEMO_ROLE
