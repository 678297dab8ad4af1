"""MCP clients a member connects over OAuth get a worker acting for that member.

Driven through Grantry's real authorization endpoint and token endpoint (Django's test
client, real DOT): consent as a plain member, the code exchanged, the token used on
/mcp; then the member leaves and the client's next call is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.test import Client
from oauth2_provider.models import get_application_model

from apps.audit.models import AuditEvent
from apps.broker.tests.conftest import make_agent
from apps.mcpauth import services
from apps.mcpauth.models import McpGrant
from apps.mcpauth.tests.oauth import (
    authorize_url,
    consent,
    exchange,
    new_flow,
    redirect_params,
    register,
)
from apps.organizations import services as org_services
from apps.organizations.models import Membership, Organization
from apps.workers.models import WorkerStatus
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def tools_list(token: str) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    return Client().post(
        "/mcp", json.dumps(body), "application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


@pytest.fixture
def alice(org: Organization) -> User:
    return MembershipFactory(
        organization=org, role="member", user=UserFactory(email="alice@acme.test")
    ).user


@pytest.fixture
def alice_client(alice: User) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def test_a_member_connects_their_own_client_as_a_worker_acting_for_them(
    org: Organization, admin: User, owner: User, alice: User, alice_client: Client
) -> None:
    coder = make_agent(org, name="template")  # only for its role
    services.policy_update(organization=org, actor=admin, member_role=coder.role)
    flow = new_flow(register(alice_client))
    response = consent(
        alice_client,
        authorize_url(flow, resource=services.mcp_resource_url()),
        fields={"worker": "new", "new_worker_name": "alice-claude"},
    )
    token = exchange(alice_client, flow, redirect_params(response)["code"])
    assert token.status_code == 200, token.content
    access = token.json()["access_token"]
    grant = McpGrant.objects.get()
    assert grant.worker.acts_for == alice
    assert grant.worker.owner == alice
    assert grant.role == coder.role  # the admins' choice, not the member's
    assert AuditEvent.objects.get(action="mcp.grant_approved").metadata["acts_for"] == alice.email
    assert tools_list(access).status_code == 200
    # Alice leaves: the client's next call is refused.
    org_services.membership_remove(
        membership=Membership.objects.get(organization=org, user=alice),
        actor_membership=Membership.objects.get(organization=org, user=owner),
    )
    assert tools_list(access).status_code == 401
    grant.worker.refresh_from_db()
    assert grant.worker.status == WorkerStatus.DISABLED
    # The refusal names the worker and the member it acted for.
    refused = AuditEvent.objects.get(action="auth.failed", worker_id=grant.worker.pk)
    assert refused.on_behalf_of_id == alice.pk


def test_without_a_member_role_a_member_connects_nothing(
    org: Organization, alice: User, alice_client: Client
) -> None:
    make_agent(org, name="template")
    flow = new_flow(register(alice_client))
    page = alice_client.get(authorize_url(flow, org="acme"))
    assert page.status_code == 200
    assert page.context["can_bind"] is False
    with pytest.raises(PermissionDenied):
        services.grant_approve(
            application=get_application_model().objects.get(client_id=flow.client_id),
            organization=org,
            actor=alice,
            new_worker_name="alice-claude",
        )
    assert not McpGrant.objects.exists()


def test_nobody_binds_a_client_to_a_worker_acting_for_someone_else(
    org: Organization, admin: User, alice: User
) -> None:
    coder = make_agent(org, name="alices-agent")
    type(coder.worker).objects.filter(pk=coder.worker.pk).update(acts_for=alice)
    coder.worker.refresh_from_db()
    services.policy_update(organization=org, actor=admin, member_role=coder.role)
    bob = MembershipFactory(
        organization=org, role="member", user=UserFactory(email="bob@acme.test")
    ).user
    admin_client = Client()
    admin_client.force_login(admin)
    flow = new_flow(register(admin_client))
    app_row = get_application_model().objects.get(client_id=flow.client_id)
    # The admin: not as Alice's agent (the client would act as Alice's accounts).
    with pytest.raises(PermissionDenied):
        services.grant_approve(
            application=app_row, organization=org, actor=admin, worker=coder.worker
        )
    # The consent page does not even offer it.
    page = admin_client.get(authorize_url(flow, org="acme"))
    assert str(coder.worker.pk) not in dict(page.context["form"].fields["worker"].choices)
    # Another member: neither.
    with pytest.raises(PermissionDenied):
        services.grant_approve(
            application=app_row, organization=org, actor=bob, worker=coder.worker
        )
    # Alice herself may.
    grant = services.grant_approve(
        application=app_row, organization=org, actor=alice, worker=coder.worker
    )
    assert grant.worker == coder.worker


def test_an_admin_connects_a_client_acting_for_themselves(org: Organization, admin: User) -> None:
    coder = make_agent(org, name="template")
    client = Client()
    client.force_login(admin)
    flow = new_flow(register(client))
    response = consent(
        client,
        authorize_url(flow, resource=services.mcp_resource_url()),
        fields={
            "worker": "new",
            "new_worker_name": "admin-claude",
            "role": str(coder.role.pk),
            "for_myself": "on",
        },
    )
    assert exchange(client, flow, redirect_params(response)["code"]).status_code == 200
    grant = McpGrant.objects.get()
    assert grant.worker.acts_for == admin
    assert grant.role == coder.role
