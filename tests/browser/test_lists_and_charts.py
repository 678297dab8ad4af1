"""Reviewer and admin flows in a real browser (issue 13, #11, #8, #9): page
through a long workers list and search it; click a chart bar to open the audit
list filtered to its events; pick a worker by name in the audit filters."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from pytest_django.live_server_helper import LiveServer

from apps.audit.tests.helpers import broker_event
from apps.organizations.models import Organization
from apps.policies.models import Role
from apps.workers.models import Worker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_workers_list_pages_and_search(
    open_as: Any, live_server: LiveServer, org: Organization, admin: User
) -> None:
    role = Role.objects.create(organization=org, name="reader")
    Worker.objects.bulk_create(
        Worker(organization=org, name=f"agent-{i:03d}", default_role=role) for i in range(120)
    )
    page = open_as(admin)
    page.goto(f"{live_server.url}/o/{org.slug}/workers/")
    rows = page.locator("main table tbody tr")
    assert rows.count() == 50
    page.get_by_role("link", name="Next →").click()
    page.wait_for_load_state()
    assert rows.first.inner_text().startswith("agent-050")
    page.get_by_role("link", name="Next →").click()
    page.wait_for_load_state()
    assert rows.count() == 20
    assert page.get_by_role("link", name="Next →").count() == 0
    page.get_by_role("link", name="← Previous").click()
    page.wait_for_load_state()
    assert rows.first.inner_text().startswith("agent-050")
    page.get_by_label("Search workers").fill("agent-11")
    page.get_by_role("button", name="Search").click()
    page.wait_for_load_state()
    assert [r.split("\t")[0] for r in rows.all_inner_texts()] == [f"agent-11{i}" for i in range(10)]


def test_chart_bar_opens_the_filtered_audit_list(
    open_as: Any, live_server: LiveServer, org: Organization, reviewer: User
) -> None:
    role = Role.objects.create(organization=org, name="reader")
    bot = Worker.objects.create(organization=org, name="triage-bot", default_role=role)
    for _ in range(3):
        broker_event(
            org, worker_id=bot.pk, decision="denied", metadata={"action": "sandbox.delete_task"}
        )
    broker_event(org, worker_id=bot.pk, decision="denied", metadata={"action": "sandbox.x"})
    broker_event(org, worker_id=bot.pk, metadata={"action": "sandbox.list_tasks"})
    page = open_as(reviewer)
    page.goto(f"{live_server.url}/o/{org.slug}/audit/charts/")
    main = page.locator("main")
    assert "triage-bot" in main.inner_text()
    assert "Worker 1" not in main.inner_text()
    page.get_by_role("link", name=re.compile(r"^sandbox\.delete_task: 3\.")).click()
    page.wait_for_load_state()
    assert "/audit/?" in page.url
    assert "call=sandbox.delete_task" in page.url
    rows = page.locator("main table.audit-table tbody tr")
    assert rows.count() == 3
    assert all("sandbox.delete_task" in r for r in rows.all_inner_texts())

    # The filter form shows the worker picker by name, with the bar's choice kept.
    page.goto(f"{live_server.url}/o/{org.slug}/audit/")
    page.locator("details.audit-filters-wrap summary").click()  # the folded form
    page.get_by_label("Worker", exact=True).select_option(label="triage-bot")
    page.get_by_label("Decision").select_option("denied")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_load_state()
    assert f"worker={bot.pk}" in page.url
    assert rows.count() == 4
