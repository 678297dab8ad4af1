"""The rule editor starts from the organization's connected providers, not from the
alphabet's first (Airtable), and a rule has one number everywhere (issue 27, #7)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.connections.models import Connection
from apps.organizations.models import Organization
from apps.policies.models import Role

pytestmark = pytest.mark.django_db


def picker_options(html: str) -> list[str]:
    picker = html.split('id="id_provider"', 1)[1].split("</select>", 1)[0]
    return re.findall(r'<option value="([^"]+)"', picker)


def test_the_provider_picker_starts_with_a_connected_provider(
    client: Client, org: Organization, admin: User
) -> None:
    role = Role.objects.create(organization=org, name="reader")
    client.force_login(admin)
    url = f"/o/{org.slug}/roles/{role.pk}/rules/new/"
    before = picker_options(client.get(url).content.decode())
    assert before[0] != "sandbox"  # nothing connected: the plain order
    Connection.objects.create(
        organization=org, provider_key="sandbox", name="sbx", auth_type="api_key", api_key="k"
    )
    options = picker_options(client.get(url).content.decode())
    assert options[0] == "sandbox"
    assert sorted(options) == sorted(before)  # the same providers, each once


def test_one_rule_number_everywhere(client: Client, org: Organization, admin: User) -> None:
    """The number a decision gives a rule ("Allowed by rule #12") is the number the role
    page and the least-privilege report show for it."""
    import json

    from apps.broker.tests.conftest import make_agent

    agent = make_agent(org)
    rule = agent.role.rules.get(action_pattern="sandbox.list_projects")
    checked = client.post(
        "/api/v1/actions/sandbox.list_projects/check",
        json.dumps({"input": {}}),
        content_type="application/json",
        **agent.headers,
    )
    assert checked.status_code == 200, checked.content
    assert f"rule #{rule.pk} " in checked.json()["reason"]

    client.force_login(admin)
    page = client.get(f"/o/{org.slug}/roles/{agent.role.pk}/").content.decode()
    assert f"Rule #{rule.pk}</strong>" in page
    report = client.get(f"/o/{org.slug}/roles/{agent.role.pk}/least-privilege/").content.decode()
    assert f"<li>#{rule.pk}: " in report  # a dry run is not a call: the rule is unused
