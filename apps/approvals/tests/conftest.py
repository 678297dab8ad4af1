"""Fixtures: an agent whose role allows sandbox.delete_task only after approval.

The worker is created and its token minted by `owner` and owned by `member`, so
separation of duties leaves `admin` (and any other admin) to approve."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.approvals.services import ApprovalBinding, approval_request
from apps.broker.results import input_digest
from apps.organizations.models import Organization
from apps.policies.evaluate import Call, evaluate
from apps.policies.selectors import load_role_rules

INPUT = {"task_id": 42}


@dataclass
class GatedAgent:
    organization: Any
    connection: Any
    role: Any
    worker: Any
    token: Any
    raw: str

    @property
    def headers(self) -> dict[str, Any]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.raw}"}

    def ctx(self) -> Any:
        from apps.workers.auth import AgentContext

        self.role.refresh_from_db()
        self.token.refresh_from_db()
        return AgentContext.for_token(self.token)

    def decide(self, input: Any = None, action: str = "sandbox.delete_task") -> Any:
        return evaluate(
            load_role_rules(self.role.pk),
            Call.for_action(
                action_name=action,
                action_class="write",
                connection_id=self.connection.pk,
                connection_name=self.connection.name,
                input=INPUT if input is None else input,
            ),
        )

    def binding(self, input: Any = None, action: str = "sandbox.delete_task") -> ApprovalBinding:
        return ApprovalBinding.for_action(
            ctx=self.ctx(),
            action_name=action,
            connection_id=self.connection.pk,
            input_digest=input_digest(INPUT if input is None else input),
        )

    def request(self, input: Any = None, **kwargs: Any) -> Any:
        data = INPUT if input is None else input
        return approval_request(
            binding=self.binding(data),
            decision=self.decide(data),
            connection_name=self.connection.name,
            input=data,
            reason=kwargs.pop("reason", "The user asked to remove a duplicate."),
            **kwargs,
        )


def approval_rules(connection: Any, **approval: Any) -> list[dict[str, Any]]:
    return [
        {"kind": "action", "provider_key": "sandbox", "action_pattern": "sandbox.list_projects"},
        {
            "kind": "action",
            "provider_key": "sandbox",
            "action_pattern": "sandbox.delete_task",
            "connection": connection.pk,
            "approval": {"required": True, **approval},
        },
    ]


def make_gated_agent(
    organization: Any, *, creator: Any, owner: Any = None, **approval: Any
) -> GatedAgent:
    from apps.connections.models import Connection
    from apps.policies.services import role_create
    from apps.workers.services import token_mint, worker_create

    connection = Connection.objects.create(
        organization=organization,
        provider_key="sandbox",
        name="sandbox-demo",
        auth_type="api_key",
        api_key="sbx_connection_secret_0123456789",
    )
    role = role_create(
        organization=organization, name="deleter", rules=approval_rules(connection, **approval)
    )
    worker = worker_create(
        organization=organization,
        name="cleanup-bot",
        default_role=role,
        owner=owner,
        actor=creator,
    )
    token, raw = token_mint(worker=worker, actor=creator)
    return GatedAgent(organization, connection, role, worker, token, raw)


@pytest.fixture
def gated(org: Organization, owner: User, member: User, admin: User) -> GatedAgent:  # noqa: ARG001 - set up first, for its side effect
    return make_gated_agent(org, creator=owner, owner=member)
