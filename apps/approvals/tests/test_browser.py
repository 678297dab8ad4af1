"""An admin approves a waiting agent call in a real browser (headless Chromium)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from pytest_django.live_server_helper import LiveServer

from apps.approvals.models import Approval, ApprovalStatus
from apps.approvals.services import approval_claim_for_execution
from apps.approvals.tests.conftest import make_gated_agent
from apps.organizations.models import Organization

pytestmark = pytest.mark.browser


def test_an_admin_approves_in_the_dashboard(
    open_as: Any, live_server: LiveServer, org: Organization, owner: User, admin: User
) -> None:
    agent = make_gated_agent(org, creator=owner)
    approval = agent.request(reason="Task 42 duplicates task 41.")
    binding = agent.binding()

    page = open_as(admin)
    page.goto(live_server.url + reverse("orgs:overview", kwargs={"org_slug": "acme"}))
    page.get_by_role("navigation", name="Organization").get_by_role(
        "link", name="Approvals"
    ).click()
    page.get_by_role("link", name="sandbox.delete_task").click()
    assert "Task 42 duplicates task 41." in page.content()
    page.get_by_label("Comment:").fill("Checked: 42 is the duplicate.")
    page.get_by_role("button", name="Approve").click()
    page.get_by_text("Approved.", exact=True).wait_for()
    assert page.locator("#approval-status").inner_text() == "Approved"

    approval = Approval.objects.get(pk=approval.pk)
    assert approval.status == ApprovalStatus.APPROVED
    assert approval.decisions.get().comment == "Checked: 42 is the duplicate."
    claimed = approval_claim_for_execution(approval_id=approval.public_id, binding=binding)
    assert claimed.status == ApprovalStatus.EXECUTED
