"""Acting for a person, played as the attacker against a real recording upstream.

Alice and Bob are members of Acme. Each has a personal Sandbox connection (their own
account, `Connection.owner`) holding their own credential; Acme also has a shared one.
"Alice's agent" is a worker bound to Alice (`Worker.acts_for`) whose role says
`connection: on_behalf_of`. What reaches the upstream is read off the wire: the
`Authorization` header the recording server received."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.audit.models import AuditEvent
from apps.broker.tests.conftest import CONNECTION_SECRET, Agent, make_agent
from apps.broker.tests.upstream import RecordingUpstream
from apps.connections.models import Connection, ConnectionStatus
from apps.core.confirm import CONFIRMED_FIELD
from apps.organizations import services as org_services
from apps.organizations.models import Membership, Organization
from apps.policies.models import Rule
from apps.workers.models import WorkerStatus
from apps.workers.services import worker_create
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

ALICE_SECRET = "sbx_alice_own_account_credential_0001"
BOB_SECRET = "sbx_bob_own_account_credential_0002"
EXECUTE = "/api/v1/actions/{}/execute"

ON_BEHALF = [
    {
        "kind": "action",
        "provider_key": "sandbox",
        "action_pattern": "sandbox.create_project",
        "connection": "on_behalf_of",
    },
    {
        "kind": "action",
        "provider_key": "sandbox",
        "action_pattern": "sandbox.list_projects",
        "connection": "on_behalf_of",
    },
]


def personal(org: Organization, user: User, secret: str, name: str) -> Connection:
    return Connection.objects.create(
        organization=org,
        provider_key="sandbox",
        name=name,
        auth_type="api_key",
        api_key=secret,
        owner=user,
    )


def bound_agent(
    org: Organization,
    user: User | None,
    *,
    name: str,
    rules: list[dict[str, Any]] | None = None,
    shared: Connection | None = None,
) -> Agent:
    """A worker acting for `user` (None: for no one) with `rules`."""
    agent = make_agent(
        org, name=name, rules=ON_BEHALF if rules is None else rules, connection=shared
    )
    if user is not None:
        type(agent.worker).objects.filter(pk=agent.worker.pk).update(acts_for=user)
        agent.worker.refresh_from_db()
    return agent


def call(
    agent: Agent, action: str = "sandbox.create_project", body: dict[str, Any] | None = None
) -> Any:
    payload = body if body is not None else {"input": {"name": "Q3 plan"}}
    return Client().post(
        EXECUTE.format(action), json.dumps(payload), "application/json", **agent.headers
    )


def credentials_seen(upstream: RecordingUpstream) -> list[str]:
    return [r.headers.get("Authorization", "") for r in upstream.requests]


@pytest.fixture
def alice(org: Organization) -> User:
    return MembershipFactory(
        organization=org, role="member", user=UserFactory(email="alice@acme.test")
    ).user


@pytest.fixture
def bob(org: Organization) -> User:
    return MembershipFactory(
        organization=org, role="admin", user=UserFactory(email="bob@acme.test")
    ).user


@pytest.fixture
def world(org: Organization, alice: User, bob: User, upstream: RecordingUpstream) -> dict[str, Any]:  # noqa: ARG001 - set up first, for its side effect
    shared = Connection.objects.create(
        organization=org,
        provider_key="sandbox",
        name="acme-shared",
        auth_type="api_key",
        api_key=CONNECTION_SECRET,
    )
    return {
        "shared": shared,
        "alice_conn": personal(org, alice, ALICE_SECRET, "alice-sandbox"),
        "bob_conn": personal(org, bob, BOB_SECRET, "bob-sandbox"),
    }


def test_alices_agent_writes_upstream_as_alice_and_both_are_on_record(
    org: Organization, alice: User, world: dict[str, Any], upstream: RecordingUpstream
) -> None:
    agent = bound_agent(org, alice, name="alice-coder", shared=world["shared"])
    response = call(agent)
    assert response.status_code == 200, response.content
    [received] = upstream.requests
    assert received.method == "POST"
    assert received.path == "/projects"
    assert received.headers["Authorization"] == f"Bearer {ALICE_SECRET}"
    assert ALICE_SECRET not in response.content.decode()
    events = list(AuditEvent.objects.filter(action__startswith="broker.execute").order_by("id"))
    assert [e.action for e in events] == ["broker.execute.attempt", "broker.execute"]
    for event in events:
        assert event.worker_id == agent.worker.pk  # the worker …
        assert event.actor_label == "alice-coder"
        assert event.on_behalf_of_id == alice.pk  # … and the member it acted for
        assert event.on_behalf_of_label == "alice@acme.test"
        assert event.connection_id == world["alice_conn"].pk
        assert event.metadata["personal"] is True


def test_bobs_agent_cannot_use_alices_connection_whatever_its_role_says(
    org: Organization, bob: User, world: dict[str, Any], upstream: RecordingUpstream
) -> None:
    alice_conn = world["alice_conn"]
    agent = bound_agent(
        org,
        bob,
        name="bob-coder",
        shared=world["shared"],
        rules=[
            *ON_BEHALF,
            # Any connection of the provider, all actions:
            {"kind": "action", "provider_key": "sandbox", "action_pattern": "sandbox.*"},
        ],
    )
    # A rule that names Alice's connection outright: validation refuses it (below), so
    # it is planted in the table as an attacker with database access to rules would.
    Rule.objects.create(
        role=agent.role,
        kind="action",
        provider_key="sandbox",
        action_pattern="sandbox.*",
        connection=alice_conn,
        position=99,
    )
    Rule.objects.create(
        role=agent.role,
        kind="proxy",
        provider_key="sandbox",
        connection=alice_conn,
        methods=["GET", "POST"],
        path_glob="/**",
        position=100,
    )
    agent.role.rules_version += 1
    agent.role.save()
    for ref in (alice_conn.pk, str(alice_conn.pk), alice_conn.name):
        named = call(agent, body={"connection": ref, "input": {"name": "x"}})
        assert named.status_code == 404, named.content
        assert named.json()["error"]["code"] == "connection_not_found"
    proxied = Client().get(f"/api/v1/proxy/{alice_conn.name}/projects", **agent.headers)
    assert proxied.status_code == 404, proxied.content
    proxied = Client().get(f"/api/v1/proxy/{alice_conn.pk}/projects", **agent.headers)
    assert proxied.status_code == 404, proxied.content
    # Unnamed: Bob's agent uses Bob's account under on_behalf_of (the one allowed fit).
    unnamed = call(agent)
    assert unnamed.status_code in (200, 400), unnamed.content
    seen = credentials_seen(upstream)
    assert f"Bearer {ALICE_SECRET}" not in seen
    # Its catalog never offers Alice's connection either.
    listed = Client().get("/api/v1/actions", **agent.headers)
    assert listed.status_code == 200
    assert alice_conn.name not in listed.content.decode()


def test_a_worker_acting_for_no_one_is_refused_by_an_on_behalf_of_rule(
    org: Organization, world: dict[str, Any], upstream: RecordingUpstream
) -> None:
    agent = bound_agent(org, None, name="nobodys", shared=world["shared"])
    response = call(agent)
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == "no_member"
    assert "acts for no member" in error["message"]
    assert upstream.requests == []
    event = AuditEvent.objects.get(action="broker.execute")
    assert event.decision == "denied"
    assert event.on_behalf_of_id is None


def test_a_member_without_a_personal_connection_gets_a_clear_refusal(
    org: Organization, world: dict[str, Any], upstream: RecordingUpstream
) -> None:
    carol = MembershipFactory(
        organization=org, role="member", user=UserFactory(email="carol@acme.test")
    ).user
    agent = bound_agent(org, carol, name="carol-coder", shared=world["shared"])
    response = call(agent)
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "no_personal_connection"
    assert "carol@acme.test" in error["message"]
    assert upstream.requests == []
    event = AuditEvent.objects.get(action="broker.execute")
    assert event.on_behalf_of_id == carol.pk


def test_a_plain_rule_never_reaches_a_personal_connection(
    org: Organization, alice: User, world: dict[str, Any], upstream: RecordingUpstream
) -> None:
    """Alice's own agent with a role that allows "any sandbox connection" uses the shared
    one: her account is reached only through `on_behalf_of`."""
    agent = bound_agent(
        org,
        alice,
        name="alice-plain",
        shared=world["shared"],
        rules=[{"kind": "action", "provider_key": "sandbox", "action_pattern": "sandbox.*"}],
    )
    assert call(agent).status_code == 200
    assert credentials_seen(upstream) == [f"Bearer {CONNECTION_SECRET}"]
    by_name = call(agent, body={"connection": "alice-sandbox", "input": {"name": "x"}})
    assert by_name.status_code == 403, by_name.content
    assert credentials_seen(upstream) == [f"Bearer {CONNECTION_SECRET}"]


def test_removing_alice_stops_her_agent_at_the_next_call(
    org: Organization,
    alice: User,
    owner: User,
    world: dict[str, Any],
    upstream: RecordingUpstream,
) -> None:
    agent = bound_agent(org, alice, name="alice-coder", shared=world["shared"])
    assert call(agent).status_code == 200
    assert len(upstream.requests) == 1
    org_services.membership_remove(
        membership=Membership.objects.get(organization=org, user=alice),
        actor_membership=Membership.objects.get(organization=org, user=owner),
    )
    refused = call(agent)
    assert refused.status_code == 401, refused.content
    assert len(upstream.requests) == 1  # nothing more went upstream
    agent.worker.refresh_from_db()
    assert agent.worker.status == WorkerStatus.DISABLED
    world["alice_conn"].refresh_from_db()
    assert world["alice_conn"].status == ConnectionStatus.REVOKED
    assert world["alice_conn"].api_key == ""  # her credential is destroyed
    gone = AuditEvent.objects.get(action="worker.member_gone")
    assert gone.worker_id == agent.worker.pk
    assert gone.on_behalf_of_id == alice.pk
    assert gone.metadata["reason"] == "left"
    assert gone.actor_id == str(owner.pk)
    disconnected = AuditEvent.objects.get(action="connection.disconnected")
    assert disconnected.connection_id == world["alice_conn"].pk
    # Bob's connection and the shared one are untouched.
    world["bob_conn"].refresh_from_db()
    assert world["bob_conn"].status == ConnectionStatus.ACTIVE


def test_a_membership_gone_behind_the_services_back_is_refused_too(
    org: Organization, alice: User, world: dict[str, Any], upstream: RecordingUpstream
) -> None:
    """The authenticator checks the member in its own statement: a membership deleted
    with plain SQL (a restore, a script) stops the agent as well."""
    agent = bound_agent(org, alice, name="alice-coder", shared=world["shared"])
    Membership.objects.filter(organization=org, user=alice).delete()
    refused = call(agent)
    assert refused.status_code == 401, refused.content
    assert refused.json()["error"]["code"] == "member_inactive"
    assert upstream.requests == []
    failed = AuditEvent.objects.get(action="auth.failed")
    assert failed.worker_id == agent.worker.pk
    assert failed.on_behalf_of_id == alice.pk


def test_disabling_alice_stops_her_agent_and_her_connections(
    org: Organization, alice: User, world: dict[str, Any], upstream: RecordingUpstream
) -> None:
    agent = bound_agent(org, alice, name="alice-coder", shared=world["shared"])
    assert call(agent).status_code == 200
    alice.is_active = False
    alice.save()
    refused = call(agent)
    assert refused.status_code == 401, refused.content
    assert len(upstream.requests) == 1
    agent.worker.refresh_from_db()
    assert agent.worker.status == WorkerStatus.DISABLED
    world["alice_conn"].refresh_from_db()
    assert world["alice_conn"].status == ConnectionStatus.REVOKED
    assert AuditEvent.objects.get(action="member.disabled").target_id == str(alice.pk)
    assert AuditEvent.objects.get(action="worker.member_gone").metadata["reason"] == "disabled"
    # Enabling the worker again is refused while she is disabled.
    from django.core.exceptions import ValidationError

    from apps.workers.services import worker_enable

    with pytest.raises(ValidationError):
        worker_enable(worker=agent.worker)


def test_a_disabled_account_is_refused_even_without_the_save_signal(
    org: Organization, alice: User, world: dict[str, Any], upstream: RecordingUpstream
) -> None:
    agent = bound_agent(org, alice, name="alice-coder", shared=world["shared"])
    type(alice).objects.filter(pk=alice.pk).update(is_active=False)  # no post_save
    refused = call(agent)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "member_inactive"
    assert upstream.requests == []


def test_alice_disconnecting_stops_her_agents_use_of_it(
    org: Organization, alice: User, world: dict[str, Any], upstream: RecordingUpstream
) -> None:
    agent = bound_agent(org, alice, name="alice-coder", shared=world["shared"])
    assert call(agent).status_code == 200
    browser = Client()
    browser.force_login(alice)
    page = browser.post(
        f"/o/acme/connections/{world['alice_conn'].pk}/disconnect/", {CONFIRMED_FIELD: "yes"}
    )
    assert page.status_code == 302, page.content.decode()[:500]
    world["alice_conn"].refresh_from_db()
    assert world["alice_conn"].status == ConnectionStatus.REVOKED
    event = AuditEvent.objects.get(action="connection.disconnected")
    assert event.actor_id == str(alice.pk)
    refused = call(agent)
    assert refused.status_code == 409, refused.content
    assert refused.json()["error"]["code"] == "no_personal_connection"
    assert len(upstream.requests) == 1


def test_bob_cannot_disconnect_or_see_alices_personal_connection(
    org: Organization, alice: User, world: dict[str, Any]
) -> None:
    carol = MembershipFactory(
        organization=org, role="reviewer", user=UserFactory(email="carol@acme.test")
    ).user
    browser = Client()
    browser.force_login(carol)
    conn = world["alice_conn"]
    assert browser.get(f"/o/acme/connections/{conn.pk}/disconnect/").status_code == 404
    assert browser.post(f"/o/acme/connections/{conn.pk}/disconnect/").status_code == 404
    assert "alice-sandbox" not in browser.get("/o/acme/connections/").content.decode()
    api = browser.get("/api/v1/orgs/acme/connections/")
    assert api.status_code == 200
    assert "alice-sandbox" not in api.content.decode()
    assert browser.get(f"/api/v1/orgs/acme/connections/{conn.pk}/").status_code == 404
    assert browser.post(f"/api/v1/orgs/acme/connections/{conn.pk}/disconnect/").status_code == 404
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.ACTIVE
    # Alice sees hers, labelled; an admin sees it too (metadata, never the secret).
    mine = Client()
    mine.force_login(alice)
    listed = mine.get("/api/v1/orgs/acme/connections/").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    [row] = [r for r in rows if r["name"] == "alice-sandbox"]
    assert row["personal"] is True
    assert row["owner_email"] == "alice@acme.test"
    assert "bob-sandbox" not in json.dumps(rows)
    admin_view = Client()
    admin_view.force_login(User.objects.get(email="bob@acme.test"))
    page = admin_view.get("/o/acme/connections/").content.decode()
    assert "alice-sandbox" in page
    assert "Personal" in page
    assert ALICE_SECRET not in page


def test_tenant_isolation_holds_for_personal_connections(
    other_org: Organization,
    alice: User,
    world: dict[str, Any],
    upstream: RecordingUpstream,
) -> None:
    """Alice is also a member of Globex, with an agent there acting for her: it cannot
    reach her Acme connection (by id, by name or unnamed); Globex's admin cannot bind a
    worker to her account in Acme, and sees nothing of it."""
    MembershipFactory(organization=other_org, role="member", user=alice)
    agent = bound_agent(other_org, alice, name="alice-globex")
    for body in (
        {"connection": world["alice_conn"].pk, "input": {"name": "x"}},
        {"connection": "alice-sandbox", "input": {"name": "x"}},
        {"input": {"name": "x"}},
    ):
        response = call(agent, body=body)
        assert response.status_code in (404, 409), response.content
    assert upstream.requests == []
    outsider = MembershipFactory(
        organization=other_org, role="owner", user=UserFactory(email="root@globex.test")
    ).user
    browser = Client()
    browser.force_login(outsider)
    assert browser.get("/api/v1/orgs/acme/connections/").status_code == 404
    assert (
        browser.get(f"/api/v1/orgs/globex/connections/{world['alice_conn'].pk}/").status_code == 404
    )
    # A worker of Globex cannot be bound to an Acme-only member.
    bob = User.objects.get(email="bob@acme.test")
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        worker_create(
            organization=other_org,
            name="steal-bob",
            default_role=agent.role,
            acts_for=bob,
            actor=outsider,
        )


def test_only_an_admin_binds_a_worker_to_someone_else(
    org: Organization, alice: User, bob: User
) -> None:
    from django.core.exceptions import ValidationError

    from apps.policies.services import role_create
    from apps.workers.services import worker_update

    role = role_create(organization=org, name="r", rules=[])
    # An admin (Bob) binds a worker to Alice.
    worker = worker_create(
        organization=org, name="alice-bot", default_role=role, acts_for=alice, actor=bob
    )
    assert worker.acts_for == alice
    # Alice may not approve her own agent's calls: they would run as her account.
    assert alice.pk in worker.separation_of_duties_ids()
    created = AuditEvent.objects.get(action="worker.created")
    assert created.metadata["acts_for"] == "alice@acme.test"
    # A member (Alice) may bind one to herself, not to Bob.
    with pytest.raises(ValidationError):
        worker_create(
            organization=org, name="bob-bot", default_role=role, acts_for=bob, actor=alice
        )
    mine = worker_create(
        organization=org, name="alice-own", default_role=role, acts_for=alice, actor=alice
    )
    assert mine.acts_for == alice
    # Rebinding is a change on record, and fenced like a disable.
    worker_update(worker=worker, acts_for=bob, actor=bob)
    changed = AuditEvent.objects.get(action="worker.changed")
    assert changed.metadata["changes"]["acts_for"] == {
        "from": "alice@acme.test",
        "to": "bob@acme.test",
    }


def test_the_audit_filter_and_export_name_the_member(
    org: Organization, alice: User, bob: User, world: dict[str, Any]
) -> None:
    agent = bound_agent(org, alice, name="alice-coder", shared=world["shared"])
    assert call(agent).status_code == 200
    reviewer = Client()
    reviewer.force_login(bob)
    for value in (str(alice.pk), "alice@acme.test"):
        listed = reviewer.get(f"/api/v1/orgs/acme/audit/events/?on_behalf_of={value}")
        assert listed.status_code == 200, listed.content
        body = listed.json()
        rows = body["results"] if isinstance(body, dict) else body
        assert {r["action"] for r in rows} == {"broker.execute", "broker.execute.attempt"}
        assert all(r["on_behalf_of_id"] == alice.pk for r in rows)
    none = reviewer.get(f"/api/v1/orgs/acme/audit/events/?on_behalf_of={bob.pk}").json()
    assert (none["results"] if isinstance(none, dict) else none) == []
    page = reviewer.get(f"/o/acme/audit/?on_behalf_of={alice.pk}").content.decode()
    assert "for alice@acme.test" in page
    export = reviewer.get(f"/api/v1/orgs/acme/audit/export.csv?on_behalf_of={alice.pk}")
    assert export.status_code == 200, export.content
    text = b"".join(export.streaming_content).decode()  # type: ignore[attr-defined]
    header, *rows = text.splitlines()
    assert "on_behalf_of_id" in header
    assert "on_behalf_of_label" in header
    calls = [row for row in rows if "broker.execute" in row]
    assert len(calls) == 2
    assert all("alice@acme.test" in row for row in calls)


# --- hostile input on the new path --------------------------------------------------

hostile_refs: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(
        [
            "on_behalf_of",
            "alice-sandbox",
            "bob-sandbox",
            "ON_BEHALF_OF",
            "on_behalf_of\u0000",
            "\ud800",
            -1,
            2**63,
            "9" * 40,
            None,
            [],
            {"owner": 1},
        ]
    ),
    st.integers(),
    st.text(max_size=80),
)


@pytest.fixture
def hostile_world(
    org: Organization, alice: User, world: dict[str, Any]
) -> tuple[Agent, dict[str, Any]]:
    return bound_agent(org, alice, name="alice-fuzz", shared=world["shared"]), world


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ref=hostile_refs)
def test_hostile_connection_refs_never_reach_anyone_elses_account(
    hostile_world: tuple[Agent, dict[str, Any]], upstream: RecordingUpstream, ref: Any
) -> None:
    agent, _ = hostile_world
    before = AuditEvent.objects.exclude(action__endswith=".attempt").count()
    body = json.dumps({"connection": ref, "input": {"name": "x"}}, ensure_ascii=True)
    response = Client().post(
        EXECUTE.format("sandbox.create_project"),
        body.encode("utf-8", "surrogatepass"),
        "application/json",
        **agent.headers,
    )
    assert response.status_code < 500, (ref, response.content[:300])
    assert AuditEvent.objects.exclude(action__endswith=".attempt").count() == before + 1
    seen = credentials_seen(upstream)
    assert f"Bearer {BOB_SECRET}" not in seen
    assert f"Bearer {CONNECTION_SECRET}" not in seen  # the role allows only on_behalf_of
    last = AuditEvent.objects.exclude(action__endswith=".attempt").latest("id")
    assert last.on_behalf_of_id == agent.worker.acts_for_id


def test_the_dashboard_and_the_api_bind_a_worker_to_a_member(
    org: Organization, alice: User, bob: User
) -> None:
    from apps.policies.services import role_create
    from apps.workers.models import Worker

    role = role_create(organization=org, name="coder", rules=ON_BEHALF)
    admin_browser = Client()
    admin_browser.force_login(bob)
    page = admin_browser.post(
        "/o/acme/workers/new/",
        {
            "name": "alice-coder",
            "description": "",
            "owner": "",
            "default_role": str(role.pk),
            "acts_for": str(alice.pk),
        },
    )
    assert page.status_code == 302, page.content.decode()[:2000]
    worker = Worker.objects.get(name="alice-coder")
    assert worker.acts_for == alice
    detail = admin_browser.get(f"/o/acme/workers/{worker.pk}/").content.decode()
    assert "alice@acme.test" in detail
    api = admin_browser.post(
        "/api/v1/orgs/acme/workers/",
        {"name": "alice-api", "default_role": role.pk, "acts_for": alice.pk},
        content_type="application/json",
    )
    assert api.status_code == 201, api.content
    assert api.json()["acts_for_email"] == "alice@acme.test"
    # Alice, a member, has no worker pages to do it from; the API refuses her.
    mine = Client()
    mine.force_login(alice)
    refused = mine.post(
        "/api/v1/orgs/acme/workers/",
        {"name": "alice-own", "default_role": role.pk, "acts_for": alice.pk},
        content_type="application/json",
    )
    assert refused.status_code == 403


def test_over_mcp_alices_agent_writes_as_alice_and_bobs_cannot(
    org: Organization,
    alice: User,
    bob: User,
    world: dict[str, Any],
    upstream: RecordingUpstream,
) -> None:
    """The same through /mcp (tools/list and tools/call, protocol 2025-11-25)."""

    def rpc(agent: Agent, method: str, params: dict[str, Any]) -> Any:
        return Client().post(
            "/mcp",
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
            content_type="application/json",
            HTTP_MCP_PROTOCOL_VERSION="2025-11-25",
            **agent.headers,
        )

    alices = bound_agent(org, alice, name="alice-mcp", shared=world["shared"])
    listed = rpc(alices, "tools/list", {})
    assert listed.status_code == 200, listed.content
    assert "sandbox.create_project" in listed.content.decode()
    called = rpc(
        alices, "tools/call", {"name": "sandbox.create_project", "arguments": {"name": "via mcp"}}
    )
    assert called.status_code == 200, called.content
    assert called.json()["result"].get("isError") is not True, called.content
    assert credentials_seen(upstream) == [f"Bearer {ALICE_SECRET}"]
    bobs = bound_agent(org, bob, name="bob-mcp", shared=world["shared"])
    named = rpc(
        bobs,
        "tools/call",
        {
            "name": "sandbox.create_project",
            "arguments": {"name": "x", "connection": world["alice_conn"].name},
        },
    )
    assert named.status_code == 200, named.content
    assert named.json()["result"]["isError"] is True, named.content
    assert "connection_not_found" in named.content.decode()
    assert credentials_seen(upstream).count(f"Bearer {ALICE_SECRET}") == 1
    assert ALICE_SECRET not in named.content.decode()


def test_rebinding_a_worker_ends_the_tokens_minted_while_it_acted_for_someone_else(
    org: Organization, alice: User, bob: User
) -> None:
    """Alice holds her agent's token. An admin re-binds the worker to Bob (or, after Alice
    left, binds it to Bob and enables it again, as worker_enable advises): the token Alice
    kept must not start acting as Bob's personal connections. A new binding needs new
    tokens."""
    from rest_framework.test import APIClient

    from apps.policies.services import role_create
    from apps.workers.services import token_mint, worker_update
    from apps.workers.trust import trust_policy_create

    role = role_create(organization=org, name="r", rules=[])
    worker = worker_create(
        organization=org, name="coder", default_role=role, acts_for=alice, actor=bob
    )
    _token, alices = token_mint(worker=worker, actor=bob)
    # Alice's CI may become her agent (an RFC 8693 exchange of its OIDC token).
    alices_ci = trust_policy_create(
        worker=worker,
        preset="github",
        conditions=[{"claim": "repository", "value": "alice/dotfiles"}],
        role=role,
        actor=bob,
    )
    whoami = APIClient().get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {alices}")
    assert whoami.json()["acts_for"]["email"] == "alice@acme.test"

    worker_update(worker=worker, acts_for=bob, actor=bob)
    after = APIClient().get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {alices}")
    assert after.status_code == 401, after.content
    assert after.json()["error"]["code"] == "token_invalid"
    changed = AuditEvent.objects.filter(action="worker.changed").latest("id")
    assert changed.metadata["revoked_tokens"] == [_token.public_id]
    # Nor does Alice's CI become Bob's agent: the worker's trust policies are turned off.
    alices_ci.refresh_from_db()
    assert not alices_ci.enabled
    # Bob's agent gets its own token.
    _new, bobs = token_mint(worker=worker, actor=bob)
    mine = APIClient().get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {bobs}")
    assert mine.json()["acts_for"]["email"] == "bob@acme.test"
