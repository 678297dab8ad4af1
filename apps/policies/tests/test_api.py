"""Management API for roles: tenancy, role checks, validation and the error shape."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.connections.models import Connection
from apps.organizations.models import Organization
from apps.policies.models import Role
from apps.policies.services import role_create

pytestmark = pytest.mark.django_db


def list_url(org: str = "acme") -> Any:
    return reverse("org_api:role-list", kwargs={"org_slug": org})


def detail_url(role: Any, org: str = "acme") -> Any:
    return reverse("org_api:role-detail", kwargs={"org_slug": org, "role_id": role.pk})


def api(user: Any) -> Any:
    client = APIClient()
    client.force_authenticate(user)
    return client


READ_ALL = {"provider_key": "sandbox", "action_pattern": "sandbox.*", "action_class": "read"}


def test_admin_creates_a_role_with_nested_rules(
    admin: User, org: Organization, sandbox_conn: Connection
) -> None:
    response = api(admin).post(
        list_url(),
        {
            "name": "triage",
            "description": "d",
            "rules": [
                READ_ALL,
                {
                    "kind": "proxy",
                    "provider_key": "sandbox",
                    "connection": sandbox_conn.pk,
                    "methods": ["GET"],
                    "path_glob": "/projects/**",
                },
            ],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "triage"
    assert [r["kind"] for r in body["rules"]] == ["action", "proxy"]
    assert body["rules"][1]["connection_name"] == "sandbox-demo"
    assert Role.objects.get(pk=body["id"]).organization == org
    assert AuditEvent.objects.filter(action="role.created").count() == 1


def test_organization_in_the_body_is_ignored(
    admin: User, org: Organization, other_org: Organization
) -> None:
    response = api(admin).post(
        list_url(), {"name": "r", "organization": other_org.pk}, format="json"
    )
    assert response.status_code == 201
    assert Role.objects.get(name="r").organization == org


def test_validation_errors_use_the_shared_shape_and_save_nothing(
    admin: User, other_org_conn: Connection
) -> None:
    response = api(admin).post(
        list_url(),
        {
            "name": "bad",
            "rules": [
                {"provider_key": "sandbox", "action_pattern": "sandbox.nope"},
                {**READ_ALL, "connection": other_org_conn.pk},
            ],
        },
        format="json",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["details"]["fields"] == {
        "rules.0.action_pattern": ["Unknown action 'sandbox.nope'."],
        "rules.1.connection": ["No such connection in this organization."],
    }
    assert "request_id" in error
    assert not Role.objects.exists()


def test_list_is_paginated_and_scoped(
    reviewer: User, org: Organization, other_org: Organization
) -> None:
    for i in range(3):
        role_create(organization=org, name=f"r{i}")
    role_create(organization=other_org, name="theirs")
    response = api(reviewer).get(list_url() + "?page_size=2")
    assert response.status_code == 200
    body = response.json()
    assert len(body["results"]) == 2
    assert body["next"]
    second = api(reviewer).get(body["next"]).json()
    names = {r["name"] for r in body["results"] + second["results"]}
    assert names == {"r0", "r1", "r2"}


def test_reviewer_reads_but_post_put_delete_are_403(reviewer: User, org: Organization) -> None:
    role = role_create(organization=org, name="r", rules=[READ_ALL])
    client = api(reviewer)
    assert client.get(detail_url(role)).json()["rules"][0]["action_pattern"] == "sandbox.*"
    post = client.post(list_url(), {"name": "x"}, format="json")
    assert post.status_code == 403
    assert post.json()["error"]["code"] == "permission_denied"
    assert client.put(detail_url(role), {"name": "x"}, format="json").status_code == 403
    assert client.delete(detail_url(role)).status_code == 403
    assert Role.objects.get(pk=role.pk).name == "r"


@pytest.mark.usefixtures("org")
def test_member_cannot_read_the_api(member: User) -> None:
    assert api(member).get(list_url()).status_code == 403


def test_non_member_gets_404_everywhere(outsider: User, org: Organization) -> None:
    role = role_create(organization=org, name="r")
    client = api(outsider)
    assert client.get(list_url()).status_code == 404
    assert client.post(list_url(), {"name": "x"}, format="json").status_code == 404
    assert client.get(detail_url(role)).status_code == 404
    assert client.delete(detail_url(role)).status_code == 404
    assert Role.objects.filter(pk=role.pk).exists()


def test_another_orgs_role_is_404_through_my_org(admin: User, other_org: Organization) -> None:
    theirs = role_create(organization=other_org, name="theirs")
    assert api(admin).get(detail_url(theirs)).status_code == 404
    assert api(admin).delete(detail_url(theirs)).status_code == 404


def test_put_replaces_and_patch_keeps_rules(admin: User, org: Organization) -> None:
    role = role_create(organization=org, name="r", description="d", rules=[READ_ALL])
    client = api(admin)
    patched = client.patch(detail_url(role), {"description": "new"}, format="json").json()
    assert patched["description"] == "new"
    assert len(patched["rules"]) == 1
    put = client.put(
        detail_url(role),
        {
            "name": "r2",
            "rules": [{"provider_key": "sandbox", "action_pattern": "sandbox.get_task"}],
        },
        format="json",
    ).json()
    assert put["name"] == "r2"
    assert put["description"] == ""
    assert [r["action_pattern"] for r in put["rules"]] == ["sandbox.get_task"]
    event = AuditEvent.objects.filter(action="role.changed").order_by("-id").first()
    assert event.metadata["rules"]["removed"][0]["action_pattern"] == "sandbox.*"


def test_delete(admin: User, org: Organization) -> None:
    role = role_create(organization=org, name="r")
    assert api(admin).delete(detail_url(role)).status_code == 204
    assert not Role.objects.exists()
    assert AuditEvent.objects.filter(action="role.deleted").count() == 1


def test_schema_documents_the_roles_endpoints(admin: User, client: Client) -> None:
    client.force_login(admin)
    schema = client.get(reverse("api-schema") + "?format=json").json()
    paths = schema["paths"]
    assert "/api/v1/orgs/{org_slug}/roles/" in paths
    post = paths["/api/v1/orgs/{org_slug}/roles/"]["post"]
    assert "examples" in post["requestBody"]["content"]["application/json"]
