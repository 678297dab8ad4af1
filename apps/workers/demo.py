"""The Workers part of the `make run` demo: a role limited to the Sandbox and a
worker "demo-agent" that uses it. Tokens are minted by the admin in the
dashboard (shown once), so none is created here."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.organizations.models import Organization
from apps.policies.models import Role
from apps.policies.services import role_create
from apps.workers.models import Worker
from apps.workers.services import worker_create

DEMO_ROLE = "sandbox-reader"
DEMO_WORKER = "demo-agent"
DEMO_RULES = [
    {
        "kind": "action",
        "provider_key": "sandbox",
        "action_pattern": "sandbox.*",
        "action_class": "read",
    },
    {"kind": "action", "provider_key": "sandbox", "action_pattern": "sandbox.create_task"},
]


@transaction.atomic
def seed_demo_worker(*, organization: Organization, user: Any) -> str:
    """Idempotent: reuses the role and the worker when they already exist."""
    role = Role.objects.for_organization(organization).filter(name=DEMO_ROLE).first()
    if role is None:
        role = role_create(
            organization=organization,
            name=DEMO_ROLE,
            description="Reads everything in the Sandbox and may create tasks; nothing else.",
            rules=DEMO_RULES,
            actor=user,
        )
    worker = Worker.objects.filter(organization=organization, name=DEMO_WORKER).first()
    if worker is None:
        worker = worker_create(
            organization=organization,
            name=DEMO_WORKER,
            description="A demo agent: mint it a token in the dashboard and call /api/v1/whoami.",
            default_role=role,
            owner=user,
            created_by=user,
        )
    return (
        f"Worker '{worker.name}' (role '{role.name}') is ready: mint its token at "
        f"/o/{organization.slug}/workers/{worker.pk}/."
    )
