"""A new organization's checklist ticks itself from real state and goes away when
done (issue 13, #7)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.audit.tests.helpers import broker_event
from apps.connections.models import Connection
from apps.organizations.models import Organization
from apps.policies.models import Role, Rule
from apps.workers.services import token_mint, worker_create

pytestmark = pytest.mark.django_db


def steps(client: Any, org: Organization) -> Any:
    html = client.get(f"/o/{org.slug}/").content.decode()
    if "Get started" not in html:
        return None
    done = re.findall(r"<s>([^<]+)</s>", html)
    todo = re.findall(r'<a href="[^"]+">([^<]+)</a> <span class="visually-hidden">\(to do\)', html)
    return done, todo


def test_checklist_ticks_from_real_state_until_done(
    client: Client, org: Organization, owner: User
) -> None:
    client.force_login(owner)
    html = client.get(f"/o/{org.slug}/").content.decode()
    assert "Get started: 0 of 5 done" in html
    assert f'href="/o/{org.slug}/connections/connect/"' in html
    assert steps(client, org) == (
        [],
        [
            "Connect an account",
            "Create a role",
            "Create a worker",
            "Mint a token",
            "Make a first call",
        ],
    )
    conn = Connection.objects.create(
        organization=org, provider_key="sandbox", name="sandbox-demo", auth_type="oauth2"
    )
    role = Role.objects.create(organization=org, name="reader")
    assert steps(client, org)[0] == ["Connect an account"]  # a role without rules is not done
    Rule.objects.create(role=role, provider_key="sandbox", action_pattern="sandbox.list_tasks")
    worker = worker_create(organization=org, name="agent", default_role=role, actor=owner)
    assert steps(client, org)[0] == ["Connect an account", "Create a role", "Create a worker"]
    token_mint(worker=worker, actor=owner)
    broker_event(org, decision="denied", connection_id=conn.pk)  # a denial is not a first call
    assert steps(client, org)[1] == ["Make a first call"]
    broker_event(org, connection_id=conn.pk)
    assert steps(client, org) is None  # all done: the checklist is gone


def test_members_do_not_get_admin_steps(client: Client, org: Organization, member: User) -> None:
    client.force_login(member)
    assert "Get started" not in client.get(f"/o/{org.slug}/").content.decode()
