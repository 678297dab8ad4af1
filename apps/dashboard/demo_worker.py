"""The Workers part of the `make run` demo (the dashboard owns the demo seed): a role
limited to the demo's own Sandbox connection and a worker "demo-agent" that uses it.
Tokens are minted by the admin in the dashboard (shown once), so none is created here.

The role's rules name the connection "sandbox-demo" rather than "any sandbox
connection": connecting a second Sandbox account later (the README tour's
first step) must not quietly grant it to the demo agent."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.organizations.models import Organization
from apps.policies.models import Role
from apps.policies.services import role_create
from apps.workers.models import Worker
from apps.workers.services import worker_create

# Named for what it allows: every read, and creating tasks (one write).
DEMO_ROLE = "sandbox-read-and-create-tasks"
DEMO_WORKER = "demo-agent"


def demo_rules(connection_id: int | None) -> list[dict[str, Any]]:
    return [
        {
            "kind": "action",
            "provider_key": "sandbox",
            "action_pattern": "sandbox.*",
            "action_class": "read",
            "connection": connection_id,
        },
        {
            "kind": "action",
            "provider_key": "sandbox",
            "action_pattern": "sandbox.create_task",
            "connection": connection_id,
        },
    ]


@transaction.atomic
def seed_demo_worker(*, organization: Organization, user: Any) -> str:
    """Idempotent: reuses the role and the worker when they already exist."""
    from apps.connections.demo import DEMO_CONNECTION
    from apps.connections.models import Connection

    role = Role.objects.for_organization(organization).filter(name=DEMO_ROLE).first()
    if role is None:
        connection_id = (
            Connection.objects.for_organization(organization)
            .filter(name=DEMO_CONNECTION)
            .values_list("pk", flat=True)
            .first()
        )
        role = role_create(
            organization=organization,
            name=DEMO_ROLE,
            description=f"Reads everything in the Sandbox and may create tasks, through the "
            f"'{DEMO_CONNECTION}' connection only; nothing else.",
            rules=demo_rules(connection_id),
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
            actor=user,
        )
    return (
        f"Worker '{worker.name}' (role '{role.name}') is ready: mint its token at "
        f"/o/{organization.slug}/workers/{worker.pk}/."
    )
