"""Approval rules in validation, the role editor, the YAML/JSON view and the API."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from apps.connections.models import Connection
from apps.organizations.models import Organization
from apps.policies.selectors import role_document
from apps.policies.services import role_create, rule_add

pytestmark = pytest.mark.django_db


def delete_rule(conn: Any, approval: Any) -> Any:
    return {
        "kind": "action",
        "provider_key": "sandbox",
        "action_pattern": "sandbox.delete_task",
        "connection": conn.pk,
        "approval": approval,
    }


@pytest.mark.usefixtures("admin")
def test_shorthand_defaults_and_named_approvers(
    org: Organization, sandbox_conn: Connection, member: User
) -> None:
    role = role_create(
        organization=org,
        name="deleter",
        rules=[
            delete_rule(sandbox_conn, "required"),
            delete_rule(sandbox_conn, {"expires_in": 600, "approvers": [member.email, member.pk]}),
            delete_rule(sandbox_conn, None),
        ],
    )
    rules = role_document(role)["rules"]
    assert rules[0]["approval"] == {"required": True, "expires_in": 3600, "approvers": []}
    assert rules[1]["approval"] == {
        "required": True,
        "expires_in": 600,
        "approvers": [member.email],
    }
    assert rules[2]["approval"] is None
    stored = role.rules.order_by("position")[1].approval
    assert stored["approvers"] == [{"id": member.pk, "email": member.email}]


@pytest.mark.parametrize(
    ("approval", "key"),
    [
        ({"required": True, "expires_in": 5}, "rules.0.approval.expires_in"),
        ({"required": True, "expires_in": 10**9}, "rules.0.approval.expires_in"),
        ({"required": "yes"}, "rules.0.approval.required"),
        ({"required": True, "approvers": ["nobody@else.test"]}, "rules.0.approval.approvers.0"),
        ({"required": False, "approvers": ["x@y.test"]}, "rules.0.approval"),
        ({"required": True, "widen": True}, "rules.0.approval"),
        ("sometimes", "rules.0.approval"),
    ],
)
def test_bad_approval_settings_are_field_errors(
    org: Organization, sandbox_conn: Connection, approval: Any, key: str
) -> None:
    with pytest.raises(ValidationError) as info:
        role_create(organization=org, name="r", rules=[delete_rule(sandbox_conn, approval)])
    assert key in info.value.message_dict


def test_the_role_page_and_yaml_say_after_approval(
    client: Client, org: Organization, sandbox_conn: Connection, member: User
) -> None:
    role = role_create(
        organization=org, name="deleter", rules=[delete_rule(sandbox_conn, "required")]
    )
    client.force_login(member)
    detail = reverse("policies:detail", kwargs={"org_slug": org.slug, "role_id": role.pk})
    html = client.get(detail).content.decode().replace("&#x27;", "'")
    assert (
        "Allows action sandbox.delete_task on connection 'sandbox-demo' "
        "after approval by an admin (request valid for 1 h)."
    ) in html
    source = reverse("policies:source", kwargs={"org_slug": org.slug, "role_id": role.pk})
    document = yaml.safe_load(client.get(source + "?format=yaml").content)
    assert document["rules"][0]["approval"]["required"] is True


def test_the_dry_run_says_needs_approval(
    client: Client, org: Organization, sandbox_conn: Connection, member: User
) -> None:
    role = role_create(
        organization=org, name="deleter", rules=[delete_rule(sandbox_conn, "required")]
    )
    client.force_login(member)
    test = reverse("policies:test", kwargs={"org_slug": org.slug, "role_id": role.pk})
    html = client.post(
        test,
        {
            "kind": "action",
            "action": "sandbox.delete_task",
            "connection": str(sandbox_conn.pk),
            "input": '{"task_id": 1}',
        },
    ).content.decode()
    assert "Needs approval" in html
    assert "only after a person approves" in html


def test_the_editor_adds_an_approval_rule_with_named_approvers(
    client: Client, org: Organization, sandbox_conn: Connection, admin: User, member: User
) -> None:
    role = role_create(organization=org, name="deleter")
    client.force_login(admin)
    add = reverse("policies:rule_add", kwargs={"org_slug": org.slug, "role_id": role.pk})
    form = client.get(add + "?provider=sandbox").content.decode()
    assert "Require a person&#x27;s approval" in form
    assert member.email in form
    response = client.post(
        add,
        {
            "provider": "sandbox",
            "actions": "exact:sandbox.delete_task",
            "connection": str(sandbox_conn.pk),
            "approval_required": "on",
            "approval_expires_minutes": "30",
            "approvers": [str(member.pk)],
        },
    )
    assert response.status_code == 302
    rule = role.rules.get()
    assert rule.approval == {
        "required": True,
        "expires_in": 1800,
        "approvers": [{"id": member.pk, "email": member.email}],
    }
    proxy = client.post(
        add,
        {
            "kind": "proxy",
            "connection": str(sandbox_conn.pk),
            "methods": ["DELETE"],
            "path_glob": "/projects/*/tasks/*",
            "approval_required": "on",
        },
    )
    assert proxy.status_code == 302
    assert role.rules.get(kind="proxy").approval["required"] is True


def test_the_api_round_trips_an_approval_rule(
    client: Client, org: Organization, sandbox_conn: Connection, admin: User
) -> None:
    client.force_login(admin)
    url = f"/api/v1/orgs/{org.slug}/roles/"
    created = client.post(
        url,
        {
            "name": "deleter",
            "rules": [
                delete_rule(sandbox_conn, {"required": True, "expires_in": 900, "approvers": []})
            ],
        },
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    rule = created.json()["rules"][0]
    assert rule["approval"] == {"required": True, "expires_in": 900, "approvers": []}
    bad = client.post(
        url,
        {"name": "bad", "rules": [delete_rule(sandbox_conn, {"expires_in": "soon"})]},
        content_type="application/json",
    )
    assert bad.status_code == 400
    assert "rules.0.approval.expires_in" in bad.json()["error"]["details"]["fields"]


def test_rule_add_keeps_approval_in_the_audit_diff(
    org: Organization, sandbox_conn: Connection
) -> None:
    from apps.audit.models import AuditEvent

    role = role_create(organization=org, name="deleter")
    rule_add(role=role, rule=delete_rule(sandbox_conn, "required"))
    event = AuditEvent.objects.filter(action="role.changed").latest("id")
    assert event.metadata["rules"]["added"][0]["approval"]["required"] is True
