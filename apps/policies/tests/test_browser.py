"""The "Test a call" panel in a real browser: htmx swaps the decision in place.
Also a keyboard-only pass over the rule editor's first step."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from pytest_django.live_server_helper import LiveServer

from apps.connections.models import Connection
from apps.organizations.models import Organization
from apps.policies.services import role_create

pytestmark = pytest.mark.browser


def test_dry_run_panel_with_htmx(
    open_as: Any, live_server: LiveServer, org: Organization, member: User, sandbox_conn: Connection
) -> None:
    role = role_create(
        organization=org,
        name="triage",
        rules=[
            {
                "provider_key": "sandbox",
                "action_pattern": "sandbox.create_task",
                "constraints": [{"field": "priority", "op": "max", "value": 3}],
            }
        ],
    )
    page = open_as(member)
    detail = live_server.url + reverse(
        "policies:detail", kwargs={"org_slug": "acme", "role_id": role.pk}
    )
    page.goto(detail)
    assert "if input.priority is at most 3" in page.content()
    page.get_by_label("Action:", exact=True).select_option("sandbox.create_task")
    page.get_by_label("Connection:", exact=True).select_option(str(sandbox_conn.pk))
    page.get_by_label("Input (JSON object):").fill('{"project_id": 1, "title": "t", "priority": 5}')
    page.get_by_role("button", name="Test this call").click()
    result = page.locator("#test-result")
    result.get_by_text("Denied", exact=True).wait_for()
    assert "input.priority must be at most 3 (got 5)" in result.inner_text()
    assert page.url == detail  # swapped in place, no navigation
    page.get_by_label("Input (JSON object):").fill('{"project_id": 1, "title": "t", "priority": 1}')
    page.get_by_role("button", name="Test this call").click()
    result.get_by_text("Allowed", exact=True).wait_for()


def test_rule_editor_by_keyboard(
    open_as: Any, live_server: LiveServer, org: Organization, admin: User, sandbox_conn: Connection
) -> None:
    role = role_create(organization=org, name="triage")
    page = open_as(admin)
    page.goto(
        live_server.url
        + reverse("policies:rule_add", kwargs={"org_slug": "acme", "role_id": role.pk})
    )
    page.get_by_label("Actions of a provider").select_option("sandbox")
    page.get_by_role("button", name="Next: choose actions").press("Enter")
    page.get_by_label("Actions:", exact=True).select_option("read:sandbox")
    page.get_by_label("Connection:", exact=True).select_option(str(sandbox_conn.pk))
    page.get_by_label("Rate limit (calls per minute per token):").fill("60")
    page.get_by_role("button", name="Add rule").press("Enter")
    page.get_by_text("Rule added.").wait_for()
    assert "all read actions of sandbox on connection 'sandbox-demo'" in page.content().replace(
        "&#x27;", "'"
    )
