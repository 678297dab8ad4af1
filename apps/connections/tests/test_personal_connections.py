"""Personal connections end to end: a member connects their own Sandbox account through
the real OAuth flow (the Sandbox authorization server over HTTP, live_server), and the
agent acting for them writes to the Sandbox as them."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.test import Client
from oauth2_provider.models import get_access_token_model

from apps.audit.models import AuditEvent
from apps.connections.models import Connection, ConnectionStatus
from apps.connections.tests.conftest import Sandbox, authorize, callback, checksum, connect
from apps.organizations.models import Organization
from apps.policies.services import role_create
from apps.sandbox.models import Project
from apps.workers.services import token_mint, worker_create
from tests.factories import MembershipFactory, UserFactory

CANARY = "CANARY-personal-5c2e-do-not-leak"


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


def connect_mine(client: Client, *, name: str = "alice-sandbox") -> Any:
    start = client.post("/o/acme/connections/mine/sandbox/", {"name": name})
    assert start.status_code == 302, start.content.decode()[:2000]
    return callback(client, authorize(client, start["Location"]))


def test_a_member_connects_their_own_account_and_their_agent_writes_as_them(
    sandbox: Sandbox,  # noqa: ARG001 - set up first, for its side effect
    org: Organization,
    admin: User,
    admin_client: Client,
    alice: User,
    alice_client: Client,
) -> None:
    shared = connect(admin_client)  # the organization's own: the admin's Sandbox account
    done = connect_mine(alice_client)
    assert done.status_code == 302, done.content.decode()[:2000]
    mine = Connection.objects.get(name="alice-sandbox")
    assert mine.owner == alice
    assert mine.account_label == alice.email  # the Sandbox says whose account it is
    assert mine.status == ConnectionStatus.ACTIVE
    token_row = get_access_token_model().objects.get(token_checksum=checksum(mine.access_token))
    assert token_row.user == alice
    created = AuditEvent.objects.get(action="connection.created", connection_id=mine.pk)
    assert created.metadata["personal_of"] == alice.email
    assert created.actor_id == str(alice.pk)

    role = role_create(
        organization=org,
        name="coder",
        rules=[
            {
                "kind": "action",
                "provider_key": "sandbox",
                "action_pattern": "sandbox.create_project",
                "connection": "on_behalf_of",
            }
        ],
        actor=admin,
    )
    worker = worker_create(
        organization=org, name="alice-coder", default_role=role, acts_for=alice, actor=admin
    )
    _, raw = token_mint(worker=worker, actor=admin)
    response = Client().post(
        "/api/v1/actions/sandbox.create_project/execute",
        json.dumps({"input": {"name": "Written by Alice's agent"}}),
        "application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] in (200, 201)
    project = Project.objects.get(name="Written by Alice's agent")
    assert project.owner == alice  # the upstream write is Alice's, not the admin's
    assert project.owner != admin
    outcome = AuditEvent.objects.get(action="broker.execute")
    assert outcome.worker_id == worker.pk
    assert outcome.on_behalf_of_id == alice.pk
    assert outcome.connection_id == mine.pk != shared.pk


@pytest.mark.usefixtures("sandbox")
def test_a_member_may_connect_only_for_themselves(
    admin_client: Client, alice: User, alice_client: Client
) -> None:
    # The organization's own connect form stays an admin's.
    assert alice_client.get("/o/acme/connections/connect/sandbox/").status_code == 403
    shared = connect(admin_client)
    # Reconnecting someone else's (or the shared) connection is not hers to do.
    assert alice_client.post(f"/o/acme/connections/{shared.pk}/reconnect/").status_code == 403
    # The management API: personal yes, the organization's no.
    api = alice_client.post(
        "/api/v1/orgs/acme/connections/oauth/start/",
        {"provider": "sandbox", "name": "alice-api"},
        content_type="application/json",
    )
    assert api.status_code == 403, api.content
    api = alice_client.post(
        "/api/v1/orgs/acme/connections/oauth/start/",
        {"provider": "sandbox", "name": "alice-api", "personal": True},
        content_type="application/json",
    )
    assert api.status_code == 201, api.content
    url = api.json()["authorization_url"]
    done = callback(alice_client, authorize(alice_client, url))
    assert done.status_code == 302
    assert Connection.objects.get(name="alice-api").owner == alice
    # A connection cannot take the name rules use for "the member's own".
    refused = alice_client.post("/o/acme/connections/mine/sandbox/", {"name": "on_behalf_of"})
    assert refused.status_code == 400
    assert "on_behalf_of" in refused.content.decode()


@pytest.mark.usefixtures("sandbox")
def test_a_state_started_for_a_personal_connection_cannot_be_finished_by_someone_else(
    org: Organization, alice_client: Client
) -> None:
    bob = MembershipFactory(
        organization=org, role="admin", user=UserFactory(email="bob@acme.test")
    ).user
    start = alice_client.post("/o/acme/connections/mine/sandbox/", {"name": "alice-sandbox"})
    assert start.status_code == 302
    bob_client = Client()
    bob_client.force_login(bob)
    # Bob's browser follows Alice's consent link: the state is bound to Alice.
    callback_url = authorize(bob_client, start["Location"])
    refused = callback(bob_client, callback_url)
    assert refused.status_code == 400
    assert not Connection.objects.filter(name="alice-sandbox").exists()


@pytest.mark.usefixtures("sandbox", "admin")
def test_the_personal_canary_appears_nowhere(
    org: Organization, alice: User, alice_client: Client, admin_client: Client
) -> None:
    conn = Connection.objects.create(
        organization=org,
        provider_key="sandbox",
        name="alice-canary",
        auth_type="oauth2",
        access_token=CANARY + "-access",
        refresh_token=CANARY + "-refresh",
        has_refresh_token=True,
        account_label="alice@sandbox",
        owner=alice,
    )
    role = role_create(
        organization=org,
        name="coder",
        rules=[
            {
                "kind": "action",
                "provider_key": "sandbox",
                "action_pattern": "sandbox.list_projects",
                "connection": "on_behalf_of",
            }
        ],
    )
    worker = worker_create(organization=org, name="alice-coder", default_role=role, acts_for=alice)
    _, raw = token_mint(worker=worker)
    collected = [repr(conn), str(conn)]
    for client, paths in (
        (
            alice_client,
            [
                "/o/acme/connections/",
                "/o/acme/connections/mine/sandbox/",
                f"/o/acme/connections/{conn.pk}/disconnect/",
                "/api/v1/orgs/acme/connections/",
                f"/api/v1/orgs/acme/connections/{conn.pk}/",
            ],
        ),
        (
            admin_client,
            [
                "/o/acme/connections/",
                f"/o/acme/workers/{worker.pk}/",
                f"/o/acme/roles/{role.pk}/",
                f"/o/acme/connections/{conn.pk}/disconnect/",
                "/api/v1/orgs/acme/connections/",
                f"/api/v1/orgs/acme/connections/{conn.pk}/",
                f"/api/v1/orgs/acme/workers/{worker.pk}/",
                "/o/acme/audit/",
            ],
        ),
    ):
        for path in paths:
            response = client.get(path)
            assert response.status_code < 500, (path, response.status_code)
            collected.append(response.content.decode(errors="replace"))
    agent = Client(headers={"Authorization": f"Bearer {raw}"})
    for path in ("/api/v1/whoami", "/api/v1/actions"):
        response = agent.get(path)
        assert response.status_code == 200, response.content
        collected.append(response.content.decode())
    whoami = json.loads(collected[-2])
    assert whoami["acts_for"] == {"id": alice.pk, "email": alice.email}
    assert "alice-canary" in collected[-1]  # the agent's catalog offers her connection
    for event in AuditEvent.objects.all():
        collected.append(repr(event.__dict__))
    everything = "\n".join(collected)
    assert CANARY not in everything
    conn.refresh_from_db()
    assert conn.access_token == CANARY + "-access"  # stored, so its absence means something


def test_the_oauth_start_url_names_no_secret(
    sandbox: Sandbox,  # noqa: ARG001 - set up first, for its side effect
    alice_client: Client,
) -> None:
    start = alice_client.post("/o/acme/connections/mine/sandbox/", {"name": "alice-sandbox"})
    query = urlsplit(start["Location"]).query
    assert "code_verifier" not in query
    assert "personal" not in query  # the state row says it, server-side
