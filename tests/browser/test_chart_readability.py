"""The charts read at 1280 and 390 px (issue 27, #6): bar labels are page text of at
least 12 px, the legends sit under the plots instead of over the lines, and two denial
reasons that start alike are both shown whole, not cut into the same string."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from pytest_django.live_server_helper import LiveServer

from apps.audit.tests.helpers import broker_event
from apps.organizations.models import Organization

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PREFIX = "No rule of role 'sandbox-read-and-create-tasks' allows this call on connection "
REASONS = (PREFIX + "'sandbox-eu' (read only)", PREFIX + "'sandbox-us' (write)")


@pytest.mark.parametrize("width", [1280, 390])
def test_charts_are_readable(
    open_as: Any, live_server: LiveServer, org: Organization, reviewer: User, width: int
) -> None:
    for reason in REASONS:
        broker_event(
            org,
            decision="denied",
            outcome="denied",
            reason=reason,
            metadata={"action": "sandbox.delete_task"},
        )
    broker_event(org)
    page = open_as(reviewer, width=width)
    page.goto(f"{live_server.url}/o/{org.slug}/audit/charts/")

    labels = page.locator(".bar-chart .bar-label")
    assert labels.count() >= 3
    sizes = labels.evaluate_all("els => els.map(e => parseFloat(getComputedStyle(e).fontSize))")
    assert min(sizes) >= 12, sizes
    texts = labels.all_inner_texts()
    for reason in REASONS:
        assert reason in texts, texts  # whole, so the two differ
    for label in labels.all():
        box = label.bounding_box()
        assert box is not None
        assert box["x"] + box["width"] <= width, box

    svg = page.locator("svg.chart").first
    legend = page.locator(".chart-legend").first
    svg_box, legend_box = svg.bounding_box(), legend.bounding_box()
    assert svg_box is not None
    assert legend_box is not None
    assert legend_box["y"] >= svg_box["y"] + svg_box["height"] - 1  # under the plot
    assert "Denied: 2" in legend.inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= width
