"""At 390 px (a phone): the connections page does not scroll sideways and the audit
table shows Decision and Outcome (issue 13, #12). Also: the charts fit the screen."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from pytest_django.live_server_helper import LiveServer

from apps.audit.tests.helpers import broker_event
from apps.connections.models import Connection
from apps.organizations.models import Organization

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDTH = 390


def _page_width(page: Any) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def test_phone_width_layouts(
    open_as: Any, live_server: LiveServer, org: Organization, owner: User
) -> None:
    for i in range(3):
        Connection.objects.create(
            organization=org,
            provider_key="sandbox",
            name=f"sandbox-with-a-rather-long-name-{i}",
            auth_type="oauth2",
            account_label="someone.with.a.long.address@example.test",
            scopes=["read", "write", "admin:org", "repo:status"],
        )
    broker_event(org, decision="denied", metadata={"action": "sandbox.delete_task"})
    page = open_as(owner, width=WIDTH)
    base = live_server.url

    page.goto(f"{base}/o/{org.slug}/connections/")
    assert _page_width(page) <= WIDTH
    assert page.locator("td strong", has_text="sandbox-with-a-rather-long-name-0").is_visible()

    page.goto(f"{base}/o/{org.slug}/audit/")
    assert _page_width(page) <= WIDTH
    for label in ("Decision", "Outcome"):
        cell = page.locator(f'td[data-label="{label}"]').first
        box = cell.bounding_box()
        assert cell.is_visible(), label
        assert box is not None, label
        assert box["x"] >= 0, (label, box)
        assert box["x"] + box["width"] <= WIDTH, (label, box)
    assert "Denied" in page.locator('td[data-label="Decision"]').first.inner_text()

    page.goto(f"{base}/o/{org.slug}/audit/charts/")
    svg = page.locator("svg.chart").first.bounding_box()
    assert svg is not None
    assert svg["width"] <= WIDTH
    assert _page_width(page) <= WIDTH
