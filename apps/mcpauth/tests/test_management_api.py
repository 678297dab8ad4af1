"""The management API of MCP clients (/api/v1/orgs/<org>/mcp/…) with personal API
tokens: the policy (read, change, refused input), the grants (list, one, revoke), the
roles that may use it, and the tenant boundary."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from oauth2_provider.models import Application

from apps.accounts.services import personal_token_mint
from apps.audit.models import AuditEvent
from apps.broker.tests.conftest import Agent, make_agent
from apps.mcpauth.models import McpGrant, McpPolicy
from apps.mcpauth.tests.oauth import refresh
from apps.mcpauth.tests.test_authorization_server import connect, tools_list
from apps.organizations.models import Organization

pytestmark = pytest.mark.django_db

BASE = "/api/v1/orgs/acme/mcp/"


class Api:
    """A client that sends one member's personal API token (and no session)."""

    def __init__(self, user: User, organization: Organization) -> None:
        _token, raw = personal_token_mint(user=user, organization=organization, name="test")
        self.client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")

    def get(self, path: str) -> Any:
        return self.client.get(path)

    def delete(self, path: str) -> Any:
        return self.client.delete(path)

    def send(self, method: str, path: str, body: Any) -> Any:
        call = getattr(self.client, method)
        return call(path, json.dumps(body), content_type="application/json")


@pytest.fixture
def agent(org: Organization) -> Agent:
    return make_agent(org)


@pytest.fixture
def connected(client: Client, admin: User, agent: Agent) -> tuple[Any, dict[str, Any]]:
    """An OAuth client connected through the real consent flow, with its tokens."""
    client.force_login(admin)
    flow, _code, token = connect(client, agent)
    client.logout()
    return flow, token


def test_admin_reads_and_changes_the_policy(org: Organization, admin: User) -> None:
    api = Api(admin, org)
    response = api.get(BASE + "policy/")
    assert response.status_code == 200
    assert response.json() == {
        "clients_allowed": True,
        "allowed_clients": [],
        "token_minutes": 60,
        "member_role": None,
        "updated_at": None,
    }

    response = api.send(
        "patch", BASE + "policy/", {"allowed_clients": ["claude.ai", ".example.com"]}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["allowed_clients"] == ["claude.ai", ".example.com"]
    assert body["token_minutes"] == 60  # not sent: kept
    policy = McpPolicy.objects.get(organization=org)
    assert policy.allowed_clients == "claude.ai\n.example.com"
    assert policy.allows("https://claude.ai/oauth/metadata")
    assert not policy.allows("https://evil.test/metadata")

    response = api.send("patch", BASE + "policy/", {"clients_allowed": False, "token_minutes": 15})
    assert response.status_code == 200, response.content
    policy.refresh_from_db()
    assert (policy.clients_allowed, policy.token_minutes) == (False, 15)
    assert policy.allowlist() == ["claude.ai", ".example.com"]
    events = AuditEvent.objects.filter(action="mcp.policy_changed", actor_id=str(admin.pk))
    assert events.count() == 2
    assert events.order_by("id").last().metadata["changes"] == {
        "clients_allowed": {"from": True, "to": False},
        "token_minutes": {"from": 60, "to": 15},
    }


def test_the_role_of_members_own_clients_is_one_of_the_organizations(
    org: Organization, other_org: Organization, admin: User, agent: Agent
) -> None:
    api = Api(admin, org)
    foreign = make_agent(other_org, name="foreign").role
    refused = api.send("patch", BASE + "policy/", {"member_role": foreign.pk})
    assert refused.status_code == 400, refused.content
    response = api.send("patch", BASE + "policy/", {"member_role": agent.role.pk})
    assert response.status_code == 200, response.content
    assert response.json()["member_role"] == agent.role.pk
    assert McpPolicy.objects.get(organization=org).member_role == agent.role
    changed = AuditEvent.objects.filter(action="mcp.policy_changed").latest("id")
    assert changed.metadata["changes"]["member_role"] == {"from": None, "to": agent.role.name}
    cleared = api.send("patch", BASE + "policy/", {"member_role": None})
    assert cleared.json()["member_role"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"token_minutes": 1}, "token_minutes"),
        ({"token_minutes": 24 * 60 + 1}, "token_minutes"),
        ({"token_minutes": "soon"}, "token_minutes"),
        ({"allowed_clients": "claude.ai"}, "allowed_clients"),
        ({"allowed_clients": ["claude.ai\nevil.test"]}, "allowed_clients"),
        ({"clients_allowed": "perhaps"}, "clients_allowed"),
        (["not", "an", "object"], "non_field_errors"),
    ],
)
def test_invalid_patch_is_400_with_the_field_errors(
    org: Organization, admin: User, body: Any, field: str
) -> None:
    response = Api(admin, org).send("patch", BASE + "policy/", body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert list(error["details"]["fields"]) == [field]
    assert error["details"]["fields"][field]  # a message (per item, for a list)
    assert not McpPolicy.objects.exists()
    assert not AuditEvent.objects.filter(action="mcp.policy_changed").exists()


def test_the_dashboard_forms_own_rule_refuses_the_same_input(
    org: Organization, admin: User, client: Client
) -> None:
    """The API binds PolicyForm: the model's bounds answer with the form's message."""
    response = Api(admin, org).send("patch", BASE + "policy/", {"token_minutes": 4})
    client.force_login(admin)
    form = {"clients_allowed": "on", "allowed_clients": "", "token_minutes": 4}
    page = client.post("/o/acme/settings/mcp/", form)
    assert page.status_code == 400
    dashboard_message = page.context["form"].errors["token_minutes"][0]
    assert response.json()["error"]["details"]["fields"]["token_minutes"] == [dashboard_message]


def test_grants_are_listed_without_secrets(
    org: Organization, admin: User, agent: Agent, connected: tuple[Any, dict[str, Any]]
) -> None:
    _flow, token = connected
    assert tools_list(Client(), token["access_token"]).status_code == 200
    api = Api(admin, org)
    listing = api.get(BASE + "grants/")
    assert listing.status_code == 200
    page = listing.json()
    assert set(page) >= {"results", "next", "previous"}
    [listed] = page["results"]
    grant = McpGrant.objects.get()
    assert listed["id"] == grant.pk
    assert listed["client_name"] == "Test client"
    assert listed["client_id"] == grant.client_id
    assert listed["registration"] == "dcr"
    assert (listed["worker"], listed["worker_name"]) == (agent.worker.pk, agent.worker.name)
    assert listed["role"] == grant.role_id
    assert listed["approved_by_email"] == admin.email
    assert listed["last_used_at"] is not None
    assert listed["active"] is True
    assert listed["revoked_at"] is None

    detail = api.get(BASE + f"grants/{grant.pk}/")
    assert detail.status_code == 200
    assert detail.json() == listed

    application = Application.objects.get(client_id=grant.client_id)
    for response in (listing, detail):
        text = response.content.decode()
        assert token["access_token"] not in text
        assert token["refresh_token"] not in text
        assert "secret" not in text
        if application.client_secret:
            assert application.client_secret not in text


def test_revoke_is_audited_and_the_grants_tokens_stop_working(
    org: Organization, admin: User, connected: tuple[Any, dict[str, Any]]
) -> None:
    flow, token = connected
    grant = McpGrant.objects.get()
    api = Api(admin, org)
    response = api.send("post", BASE + f"grants/{grant.pk}/revoke/", {"reason": "Laptop lost"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["active"] is False
    assert body["revoked_at"] is not None
    assert body["revoked_by_email"] == admin.email
    assert body["revoke_reason"] == "Laptop lost"

    assert tools_list(Client(), token["access_token"]).status_code == 401
    assert refresh(Client(), flow, token["refresh_token"]).json()["error"] == "invalid_grant"
    event = AuditEvent.objects.get(action="mcp.grant_revoked")
    assert event.actor_id == str(admin.pk)
    assert event.metadata["reason"] == "Laptop lost"
    assert event.target_id == str(grant.pk)

    again = api.send("post", BASE + f"grants/{grant.pk}/revoke/", {})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    assert AuditEvent.objects.filter(action="mcp.grant_revoked").count() == 1


def test_delete_revokes_the_grant(
    org: Organization, owner: User, connected: tuple[Any, dict[str, Any]]
) -> None:
    _flow, token = connected
    grant = McpGrant.objects.get()
    api = Api(owner, org)
    response = api.delete(BASE + f"grants/{grant.pk}/")
    assert response.status_code == 200, response.content
    assert response.json()["active"] is False
    assert McpGrant.objects.get().revoked_by == owner
    assert tools_list(Client(), token["access_token"]).status_code == 401
    assert AuditEvent.objects.filter(action="mcp.grant_revoked", actor_id=str(owner.pk)).exists()
    assert api.delete(BASE + f"grants/{grant.pk}/").status_code == 409


@pytest.mark.usefixtures("connected")
@pytest.mark.parametrize("role_fixture", ["reviewer", "member"])
def test_a_role_below_admin_gets_403_even_to_read(
    request: pytest.FixtureRequest, org: Organization, role_fixture: str
) -> None:
    user = request.getfixturevalue(role_fixture)
    grant = McpGrant.objects.get()
    api = Api(user, org)
    grant_url = BASE + f"grants/{grant.pk}/"
    for response in (
        api.get(BASE + "policy/"),
        api.send("patch", BASE + "policy/", {"token_minutes": 10}),
        api.get(BASE + "grants/"),
        api.get(grant_url),
        api.send("post", grant_url + "revoke/", {}),
        api.delete(grant_url),
    ):
        assert response.status_code == 403, response.content
        assert response.json()["error"]["code"] == "permission_denied"
    assert McpGrant.objects.get().is_active()
    assert not McpPolicy.objects.exists()


def test_another_organization_gets_404(
    org: Organization,
    other_org: Organization,
    admin: User,
    outsider: User,
    connected: tuple[Any, dict[str, Any]],
) -> None:
    _flow, token = connected
    grant = McpGrant.objects.get()
    mallory = Api(outsider, other_org)  # an owner of Globex, with Globex's token
    own = "/api/v1/orgs/globex/mcp/"
    for response in (
        mallory.get(BASE + "policy/"),
        mallory.send("patch", BASE + "policy/", {"clients_allowed": False}),
        mallory.get(BASE + "grants/"),
        mallory.get(BASE + f"grants/{grant.pk}/"),
        mallory.send("post", BASE + f"grants/{grant.pk}/revoke/", {}),
        mallory.delete(BASE + f"grants/{grant.pk}/"),
        # Her own org's URL with Acme's grant id.
        mallory.get(own + f"grants/{grant.pk}/"),
        mallory.send("post", own + f"grants/{grant.pk}/revoke/", {}),
        mallory.delete(own + f"grants/{grant.pk}/"),
    ):
        assert response.status_code == 404, response.content
        assert response.json()["error"]["code"] == "not_found"
    assert mallory.get(own + "grants/").json()["results"] == []

    # Acme's admin with a token minted for Acme, against Globex: 404 as well.
    assert Api(admin, org).get(own + "policy/").status_code == 404
    assert McpGrant.objects.get().is_active()
    assert not McpPolicy.objects.filter(organization=org).exists()
    assert tools_list(Client(), token["access_token"]).status_code == 200
