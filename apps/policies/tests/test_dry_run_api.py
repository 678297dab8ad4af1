"""The role editor's “Test a call” through the management API: the same form and
the same evaluation as the dashboard; nothing sent, nothing recorded."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from apps.accounts.services import personal_token_mint
from apps.audit.models import AuditEvent
from apps.connections.models import Connection
from apps.organizations.models import Organization
from apps.policies.models import Role
from apps.policies.services import role_create
from apps.policies.tests.conftest import make_connection

pytestmark = pytest.mark.django_db


@pytest.fixture
def role(org: Organization, sandbox_conn: Connection) -> Role:
    return role_create(
        organization=org,
        name="triage",
        rules=[
            {"provider_key": "sandbox", "action_pattern": "sandbox.*", "action_class": "read"},
            {
                "provider_key": "sandbox",
                "action_pattern": "sandbox.create_task",
                "connection": sandbox_conn.pk,
                "constraints": [{"field": "priority", "op": "max", "value": 3}],
            },
            {
                "kind": "proxy",
                "provider_key": "sandbox",
                "connection": sandbox_conn.pk,
                "methods": ["GET"],
                "path_glob": "/projects",
            },
        ],
    )


def api(user: Any) -> Any:
    client = APIClient()
    client.force_login(user)
    return client


def url(role: Any) -> Any:
    return f"/api/v1/orgs/acme/roles/{role.pk}/test/"


def test_constraint_decides_like_the_dashboard_and_nothing_is_recorded(
    org: Organization, reviewer: User, role: Role, sandbox_conn: Connection
) -> None:
    _token, raw = personal_token_mint(user=reviewer, organization=org, name="ci")
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}")
    call = {"action": "sandbox.create_task", "connection": sandbox_conn.pk}
    denied = client.post(
        url(role), {**call, "input": {"project_id": 1, "title": "x", "priority": 5}}, format="json"
    )
    assert denied.status_code == 200, denied.content
    assert denied.json()["allowed"] is False
    assert "input.priority must be at most 3 (got 5)" in denied.json()["reason"]
    allowed = client.post(
        url(role), {**call, "input": {"project_id": 1, "title": "x", "priority": 2}}, format="json"
    ).json()
    assert allowed["allowed"] is True
    assert allowed["rule_id"] == role.rules.get(action_pattern="sandbox.create_task").pk
    assert allowed["input_errors"] == []
    before = AuditEvent.objects.count()
    client.post(url(role), {**call, "input": {}}, format="json")
    assert AuditEvent.objects.count() == before


@pytest.mark.usefixtures("org")
def test_input_errors_and_proxy_calls(admin: User, role: Role, sandbox_conn: Connection) -> None:
    schema = api(admin).post(
        url(role), {"action": "sandbox.list_tasks", "input": {"project_id": "one"}}, format="json"
    )
    body = schema.json()
    assert body["allowed"] is True
    assert body["input_errors"]
    assert body["input_errors"][0]["path"] == "/project_id"
    proxy = {"kind": "proxy", "connection": sandbox_conn.pk, "path": "/projects"}
    assert api(admin).post(url(role), proxy, format="json").json()["allowed"] is True
    post = api(admin).post(url(role), {**proxy, "method": "POST"}, format="json").json()
    assert post["allowed"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "sandbox.no_such_action"}, "action"),
        ({}, "action"),
        ({"kind": "proxy", "path": "/projects"}, "connection"),
        ({"kind": "teleport", "action": "sandbox.list_projects"}, "kind"),
    ],
)
@pytest.mark.usefixtures("org")
def test_bad_input_is_400_with_fields(admin: User, role: Role, body: Any, field: str) -> None:
    response = api(admin).post(url(role), body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert field in error["details"]["fields"]


@pytest.mark.usefixtures("org")
def test_a_connection_of_another_org_is_not_offered(
    admin: User, role: Role, other_org: Organization
) -> None:
    theirs = make_connection(other_org, name="globex-sandbox")
    response = api(admin).post(
        url(role),
        {"kind": "proxy", "connection": theirs.pk, "path": "/projects"},
        format="json",
    )
    assert response.status_code == 400
    assert "connection" in response.json()["error"]["details"]["fields"]


@pytest.mark.usefixtures("org")
def test_member_is_too_low_and_another_org_gets_404(
    member: User, role: Role, outsider: User, other_org: Organization
) -> None:
    body = {"action": "sandbox.list_projects"}
    assert api(member).post(url(role), body, format="json").status_code == 403
    assert api(outsider).post(url(role), body, format="json").status_code == 404
    theirs = role_create(organization=other_org, name="theirs")
    response = api(outsider).post(f"/api/v1/orgs/globex/roles/{role.pk}/test/", body, format="json")
    assert response.status_code == 404  # my role id under their org
    assert api(outsider).post(url(theirs), body, format="json").status_code == 404
