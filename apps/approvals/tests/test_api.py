"""The agent's status endpoint and the management API."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client

from apps.approvals import agent as agent_api
from apps.approvals.models import ApprovalStatus
from apps.approvals.services import approval_decide
from apps.approvals.tests.conftest import INPUT, GatedAgent, make_gated_agent
from apps.audit.models import AuditEvent
from apps.organizations.models import Organization
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def status_url(approval: Any) -> Any:
    return f"/api/v1/approvals/{approval.public_id}"


def org_url(approval: Any, suffix: str = "") -> Any:
    return f"/api/v1/orgs/{approval.organization.slug}/approvals/{approval.public_id}/{suffix}"


# --- agent status -----------------------------------------------------------------------


def test_the_agent_sees_its_pending_approval(client: Client, gated: GatedAgent) -> None:
    approval = gated.request()
    response = client.get(status_url(approval), **gated.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == approval.public_id
    assert body["status"] == "pending"
    assert body["input_sha256"] == approval.input_digest
    assert response["Retry-After"] == "5"
    assert response["Cache-Control"] == "no-store"
    assert "input" not in body  # the agent already knows its input; approvers see it


def test_the_status_needs_the_worker_token(client: Client, gated: GatedAgent, admin: User) -> None:
    approval = gated.request()
    assert client.get(status_url(approval)).status_code == 401
    client.force_login(admin)  # a session is not a worker token
    assert client.get(status_url(approval)).status_code == 401


@pytest.mark.usefixtures("owner")
def test_another_worker_or_organization_gets_404(
    client: Client, gated: GatedAgent, other_org: Organization
) -> None:
    approval = gated.request()
    from apps.workers.services import token_mint, worker_create

    sibling = worker_create(
        organization=gated.organization, name="sibling", default_role=gated.role
    )
    _, raw = token_mint(worker=sibling)
    response = client.get(status_url(approval), HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"

    from tests.factories import MembershipFactory

    MembershipFactory(organization=other_org, role="owner")  # someone who could approve
    stranger = make_gated_agent(other_org, creator=None)
    response = client.get(status_url(approval), **stranger.headers)
    assert response.status_code == 404


def test_wait_must_be_a_number_and_is_capped(client: Client, gated: GatedAgent) -> None:
    approval = gated.request()
    response = client.get(status_url(approval) + "?wait=soon", **gated.headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_input"
    approval_decide(approval=approval, actor=_admin(gated), approve=False, comment="no")
    # Not pending: answers at once whatever wait says (999 is capped at 30 anyway).
    response = client.get(status_url(approval) + "?wait=999", **gated.headers)
    assert response.json()["status"] == "denied"
    assert response.json()["comment"] == "no"
    assert "Retry-After" not in response


def _admin(gated: Any) -> User:
    return MembershipFactory(organization=gated.organization, role="admin").user


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_returns_when_an_admin_approves(
    client: Client, org: Organization, owner: User, admin: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = make_gated_agent(org, creator=owner)
    approval = agent.request()
    polling = threading.Event()
    done = threading.Event()
    release_connection = agent_api._release_connection

    def release_and_tell() -> None:  # the view saw 'pending' and starts waiting
        release_connection()
        polling.set()

    monkeypatch.setattr(agent_api, "_release_connection", release_and_tell)

    def approve_while_it_waits() -> None:
        try:
            if polling.wait(timeout=10):
                approval_decide(approval=approval, actor=admin, approve=True, comment="go")
        finally:
            connections.close_all()
            done.set()

    thread = threading.Thread(target=approve_while_it_waits)
    thread.start()
    response = client.get(status_url(approval) + "?wait=20", **agent.headers)
    thread.join(timeout=30)
    assert done.is_set()
    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    assert '"approval"' in response.json()["next"]


# --- management API ---------------------------------------------------------------------


def _token(user: Any, org: Organization) -> Any:
    from apps.accounts.services import personal_token_mint

    _token, raw = personal_token_mint(user=user, organization=org, name="approvals")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_list_show_and_approve_with_a_personal_token(
    client: Client, gated: GatedAgent, admin: User
) -> None:
    approval = gated.request()
    auth = _token(admin, gated.organization)
    listed = client.get(f"/api/v1/orgs/{gated.organization.slug}/approvals/", **auth)
    assert listed.status_code == 200
    rows = listed.json()["results"]
    assert [r["id"] for r in rows] == [approval.public_id]
    assert rows[0]["can_decide"] is True
    # An eligible approver sees the exact input while it is pending (issue 22 item 1).
    assert rows[0]["input_redacted"] is False
    assert rows[0]["input"] == INPUT

    shown = client.get(org_url(approval), **auth)
    assert shown.status_code == 200
    assert shown.json()["worker"]["name"] == "cleanup-bot"

    decided = client.post(
        org_url(approval, "approve/"), {"comment": "ok"}, content_type="application/json", **auth
    )
    assert decided.status_code == 200, decided.content
    assert decided.json()["status"] == "approved"
    assert decided.json()["decisions"][0]["comment"] == "ok"
    pending_only = client.get(
        f"/api/v1/orgs/{gated.organization.slug}/approvals/?status=pending", **auth
    )
    assert pending_only.json()["results"] == []
    bad = client.get(f"/api/v1/orgs/{gated.organization.slug}/approvals/?status=nope", **auth)
    assert bad.status_code == 400


def test_deny_and_separation_of_duties_through_the_api(
    client: Client, gated: GatedAgent, owner: User, admin: User
) -> None:
    approval = gated.request()
    refused = client.post(
        org_url(approval, "approve/"),
        {},
        content_type="application/json",
        **_token(owner, gated.organization),
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "separation_of_duties"
    denied = client.post(
        org_url(approval, "deny/"),
        {"comment": "not today"},
        content_type="application/json",
        **_token(admin, gated.organization),
    )
    assert denied.status_code == 200
    assert denied.json()["status"] == "denied"
    again = client.post(
        org_url(approval, "approve/"),
        {},
        content_type="application/json",
        **_token(admin, gated.organization),
    )
    assert again.status_code == 409


def test_a_plain_member_sees_only_what_names_them(
    client: Client, gated: GatedAgent, member: User
) -> None:
    gated.request()
    client.force_login(member)
    listed = client.get(f"/api/v1/orgs/{gated.organization.slug}/approvals/")
    assert listed.status_code == 200
    assert listed.json()["results"] == []


def test_another_organizations_admin_cannot_see_or_decide(
    client: Client, gated: GatedAgent, outsider: User, other_org: Organization
) -> None:
    approval = gated.request()
    auth = _token(outsider, other_org)
    for url in (org_url(approval), org_url(approval, "approve/"), org_url(approval, "deny/")):
        for method in ("get", "post"):
            response = getattr(client, method)(url, **auth)
            assert response.status_code in (404, 405), (method, url, response.status_code)
    # Under the attacker's own org slug the victim's id is unknown too.
    own = f"/api/v1/orgs/{other_org.slug}/approvals/{approval.public_id}/"
    assert client.get(own, **auth).status_code == 404
    assert client.post(own + "approve/", **auth).status_code == 404
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING
    assert not AuditEvent.objects.filter(action__in=["approval.approved", "approval.denied"])


def test_the_schema_documents_the_endpoints(client: Client) -> None:
    schema = client.get("/api/schema/?format=json").json()
    paths = schema["paths"]
    assert "/api/v1/approvals/{approval_id}" in paths
    for suffix in ("", "{approval_id}/", "{approval_id}/approve/", "{approval_id}/deny/"):
        assert f"/api/v1/orgs/{{org_slug}}/approvals/{suffix}" in paths
    rule = schema["components"]["schemas"]["RuleRequest"]["properties"]
    assert "approval" in rule
