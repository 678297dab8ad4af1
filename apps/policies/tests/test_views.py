"""Dashboard pages: tenancy, role checks, the editor, the source view and the dry run."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.connections.models import Connection
from apps.organizations.models import Organization
from apps.policies.models import Role, Rule
from apps.policies.services import role_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def role(org: Organization, sandbox_conn: Connection) -> Role:
    return role_create(
        organization=org,
        name="triage",
        description="Reads tasks",
        rules=[
            {"provider_key": "sandbox", "action_pattern": "sandbox.*", "action_class": "read"},
            {
                "provider_key": "sandbox",
                "action_pattern": "sandbox.create_task",
                "connection": sandbox_conn.pk,
                "constraints": [{"field": "priority", "op": "max", "value": 3}],
            },
        ],
    )


def url(name: Any, org: str = "acme", **kw: Any) -> Any:
    return reverse(f"policies:{name}", kwargs={"org_slug": org, **kw})


def role_urls(role: Any) -> Any:
    rule = role.rules.first()
    return {
        "list": url("list"),
        "create": url("create"),
        "detail": url("detail", role_id=role.pk),
        "edit": url("edit", role_id=role.pk),
        "delete": url("delete", role_id=role.pk),
        "source": url("source", role_id=role.pk),
        "test": url("test", role_id=role.pk),
        "rule_add": url("rule_add", role_id=role.pk),
        "rule_delete": url("rule_delete", role_id=role.pk, rule_id=rule.pk),
    }


@pytest.mark.usefixtures("role")
def test_anonymous_is_sent_to_login(client: Client) -> None:
    response = client.get(url("list"))
    assert response.status_code == 302
    assert "/accounts/login" in response["Location"]


def test_every_page_is_404_for_a_non_member(client: Client, outsider: User, role: Role) -> None:
    client.force_login(outsider)
    for name, target in role_urls(role).items():
        assert client.get(target).status_code in (404, 405), name
        assert client.post(target, {"name": "x"}).status_code == 404, name
    assert Role.objects.filter(pk=role.pk).exists()


def test_another_orgs_role_is_404_inside_my_org(
    client: Client, admin: User, other_org: Organization
) -> None:
    theirs = role_create(organization=other_org, name="theirs")
    client.force_login(admin)
    assert client.get(url("detail", role_id=theirs.pk)).status_code == 404
    assert client.post(url("delete", role_id=theirs.pk)).status_code == 404
    assert Role.objects.filter(pk=theirs.pk).exists()


def test_members_read_but_cannot_write(client: Client, member: User, role: Role) -> None:
    client.force_login(member)
    assert client.get(url("list")).status_code == 200
    detail = client.get(url("detail", role_id=role.pk))
    assert detail.status_code == 200
    assert b"Add a rule" not in detail.content
    targets = role_urls(role)
    for name in ("create", "edit", "delete", "rule_add"):
        assert client.get(targets[name]).status_code == 403, name
    for name in ("create", "edit", "delete", "rule_add", "rule_delete"):
        assert client.post(targets[name], {"name": "x"}).status_code == 403, name
    assert Rule.objects.filter(role=role).count() == 2


@pytest.mark.usefixtures("role")
def test_reviewer_post_is_403(client: Client, reviewer: User) -> None:
    client.force_login(reviewer)
    response = client.post(url("create"), {"name": "new"})
    assert response.status_code == 403
    assert not Role.objects.filter(name="new").exists()


def test_list_and_detail_show_rules_in_plain_words(
    client: Client, member: User, role: Role
) -> None:
    client.force_login(member)
    listing = client.get(url("list")).content.decode()
    assert "triage" in listing
    page = client.get(url("detail", role_id=role.pk)).content.decode()
    assert "all read actions of sandbox on any sandbox connection" in page
    assert "action sandbox.create_task on connection &#x27;sandbox-demo&#x27;" in page
    assert "if input.priority is at most 3" in page


@pytest.mark.usefixtures("role")
def test_sidebar_links_to_roles(client: Client, member: User) -> None:
    client.force_login(member)
    page = client.get(reverse("orgs:overview", kwargs={"org_slug": "acme"})).content.decode()
    assert f'href="{url("list")}"' in page


def test_admin_creates_edits_and_deletes_a_role(client: Client, admin: User) -> None:
    client.force_login(admin)
    response = client.post(url("create"), {"name": "ops", "description": "Ops bots"})
    role = Role.objects.get(name="ops")
    assert response.status_code == 302
    assert response["Location"] == url("detail", role_id=role.pk)
    bad = client.post(url("create"), {"name": "ops"})
    assert bad.status_code == 400
    assert "already exists" in bad.content.decode()
    client.post(url("edit", role_id=role.pk), {"name": "ops-2", "description": ""})
    role.refresh_from_db()
    assert role.name == "ops-2"
    assert client.post(url("delete", role_id=role.pk), {"confirmed": "yes"}).status_code == 302
    assert not Role.objects.filter(pk=role.pk).exists()
    assert list(
        AuditEvent.objects.filter(target_type="role")
        .order_by("id")
        .values_list("action", flat=True)
    ) == ["role.created", "role.changed", "role.deleted"]


def test_rule_editor_two_steps_and_constraints(
    client: Client, admin: User, role: Role, sandbox_conn: Connection
) -> None:
    client.force_login(admin)
    pick = client.get(url("rule_add", role_id=role.pk)).content.decode()
    assert 'name="provider"' in pick
    assert "Sandbox" in pick
    form = client.get(url("rule_add", role_id=role.pk) + "?provider=sandbox").content.decode()
    assert "exact:sandbox.delete_task" in form
    assert "All read actions of" in form
    response = client.post(
        url("rule_add", role_id=role.pk),
        {
            "provider": "sandbox",
            "actions": "exact:sandbox.update_task",
            "connection": str(sandbox_conn.pk),
            "c0_field": "priority",
            "c0_op": "one_of",
            "c0_value": "4, 5",
            "rate_limit_per_minute": "20",
        },
    )
    assert response.status_code == 302
    rule = role.rules.get(action_pattern="sandbox.update_task")
    assert rule.connection_id == sandbox_conn.pk
    assert rule.rate_limit_per_minute == 20
    # The schema says priority is an integer, so the typed values are numbers.
    assert rule.constraints == [{"field": "priority", "op": "one_of", "value": [4, 5]}]


def test_rule_editor_shows_clear_field_errors_and_saves_nothing(
    client: Client, admin: User, role: Role
) -> None:
    client.force_login(admin)
    before = role.rules.count()
    response = client.post(
        url("rule_add", role_id=role.pk),
        {
            "provider": "sandbox",
            "actions": "exact:sandbox.create_task",
            "connection": "",
            "c0_field": "priority",
            "c0_op": "max",
            "c0_value": "lots",
        },
    )
    assert response.status_code == 400
    assert "“lots” is not a number." in response.content.decode()
    response = client.post(
        url("rule_add", role_id=role.pk),
        {
            "provider": "sandbox",
            "actions": "read:sandbox",
            "c0_field": "title",
            "c0_op": "glob",
            "c0_value": "x*",
        },
    )
    assert response.status_code == 400
    assert "&#x27;title&#x27; is not an input field" in response.content.decode()
    assert role.rules.count() == before


def test_proxy_rule_through_the_editor(
    client: Client, admin: User, role: Role, sandbox_conn: Connection
) -> None:
    client.force_login(admin)
    assert b"HTTP methods" in client.get(url("rule_add", role_id=role.pk) + "?kind=proxy").content
    bad = client.post(
        url("rule_add", role_id=role.pk),
        {
            "kind": "proxy",
            "connection": str(sandbox_conn.pk),
            "methods": ["GET"],
            "path_glob": "/a/../b",
        },
    )
    assert bad.status_code == 400
    assert "&#x27;..&#x27;" in bad.content.decode()
    ok = client.post(
        url("rule_add", role_id=role.pk),
        {
            "kind": "proxy",
            "connection": str(sandbox_conn.pk),
            "methods": ["GET", "POST"],
            "path_glob": "/projects/*/tasks",
        },
    )
    assert ok.status_code == 302
    rule = role.rules.get(kind="proxy")
    assert rule.methods == ["GET", "POST"]
    assert rule.provider_key == "sandbox"


def test_rule_delete(client: Client, admin: User, role: Role) -> None:
    client.force_login(admin)
    rule = role.rules.first()
    assert (
        client.post(
            url("rule_delete", role_id=role.pk, rule_id=rule.pk), {"confirmed": "yes"}
        ).status_code
        == 302
    )
    assert not Rule.objects.filter(pk=rule.pk).exists()
    assert AuditEvent.objects.filter(action="role.changed").count() == 1


def test_source_view_yaml_and_json(client: Client, member: User, role: Role) -> None:
    client.force_login(member)
    page = client.get(url("source", role_id=role.pk))
    assert page.status_code == 200
    assert b"action_pattern: sandbox.*" in page.content
    as_json = json.loads(client.get(url("source", role_id=role.pk) + "?format=json").content)
    as_yaml = yaml.safe_load(client.get(url("source", role_id=role.pk) + "?format=yaml").content)
    assert as_json == as_yaml
    assert as_json["name"] == "triage"
    assert [r["action_pattern"] for r in as_json["rules"]] == ["sandbox.*", "sandbox.create_task"]


def test_dry_run_without_js(
    client: Client, member: User, role: Role, sandbox_conn: Connection
) -> None:
    client.force_login(member)
    data = {
        "kind": "action",
        "action": "sandbox.create_task",
        "connection": str(sandbox_conn.pk),
        "input": '{"project_id": 1, "title": "x", "priority": 5}',
    }
    page = client.post(url("test", role_id=role.pk), data)
    text = page.content.decode()
    assert page.status_code == 200
    assert "Denied" in text
    assert "input.priority must be at most 3 (got 5)" in text
    data["input"] = '{"project_id": 1, "title": "x", "priority": 2}'
    allowed = client.post(url("test", role_id=role.pk), data).content.decode()
    assert "Allowed" in allowed
    assert "rule #" in allowed
    # Nothing was changed or recorded by a dry run.
    assert not AuditEvent.objects.exclude(action="role.created").exists()


def test_dry_run_with_htmx_returns_the_fragment(
    client: Client, member: User, role: Role, sandbox_conn: Connection
) -> None:
    client.force_login(member)
    response = client.post(
        url("test", role_id=role.pk),
        {
            "kind": "action",
            "action": "sandbox.delete_task",
            "connection": str(sandbox_conn.pk),
            "input": '{"task_id": 1}',
        },
        HTTP_HX_REQUEST="true",
    )
    text = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in text
    assert "has no rule allowing action &#x27;sandbox.delete_task&#x27;" in text


def test_dry_run_reports_bad_json_and_schema_problems(
    client: Client, member: User, role: Role, sandbox_conn: Connection
) -> None:
    client.force_login(member)
    bad = client.post(
        url("test", role_id=role.pk),
        {"kind": "action", "action": "sandbox.list_tasks", "input": "{nope"},
    )
    assert bad.status_code == 400
    assert "not valid JSON" in bad.content.decode()
    schema = client.post(
        url("test", role_id=role.pk),
        {
            "kind": "action",
            "action": "sandbox.list_tasks",
            "connection": str(sandbox_conn.pk),
            "input": '{"project_id": "x"}',
        },
    )
    text = schema.content.decode()
    assert "Allowed" in text
    assert "would also reject this input" in text


def test_dry_run_proxy(client: Client, member: User, role: Role, sandbox_conn: Connection) -> None:
    client.force_login(member)
    response = client.post(
        url("test", role_id=role.pk),
        {
            "kind": "proxy",
            "connection": str(sandbox_conn.pk),
            "method": "GET",
            "path": "/projects/%2e%2e/admin",
        },
    )
    assert "was rejected" in response.content.decode()


def form_sections(html: str) -> list[tuple[str, list[str]]]:
    """Each fieldset's legend and the names of the fields inside it, in page order."""
    import re

    sections = []
    fieldset = r'<fieldset data-testid="rule-section-[a-z]+">(.*?)</fieldset>'
    for body in re.findall(fieldset, html, re.S):
        legend = re.search(r"<legend>(.*?)</legend>", body, re.S)
        names = list(dict.fromkeys(re.findall(r'name="([a-z0-9_]+)"', body)))
        sections.append((legend.group(1) if legend else "", names))
    return sections


def test_the_rule_form_is_grouped_what_where_conditions_limits_approval(
    client: Client, admin: User, role: Role
) -> None:
    client.force_login(admin)
    action = form_sections(
        client.get(url("rule_add", role_id=role.pk) + "?provider=sandbox").content.decode()
    )
    assert [legend for legend, _ in action] == [
        "1. What it allows",
        "2. Where",
        "3. Conditions on the input (optional)",
        "4. Limits (optional)",
        "5. Approval (optional)",
    ]
    fields = dict(action)
    assert fields["1. What it allows"] == ["actions"]
    assert fields["2. Where"] == ["connection"]
    assert fields["4. Limits (optional)"][0] == "rate_limit_per_minute"
    assert {"window_days", "quota_limit"} <= set(fields["4. Limits (optional)"])
    assert "approval_required" in fields["5. Approval (optional)"]
    proxy = form_sections(
        client.get(url("rule_add", role_id=role.pk) + "?kind=proxy").content.decode()
    )
    assert [legend for legend, _ in proxy] == [
        "1. What it allows",
        "2. Where",
        "3. Limits (optional)",
        "4. Approval (optional)",
    ]
    assert dict(proxy)["1. What it allows"] == ["methods", "path_glob"]
