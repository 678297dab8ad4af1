"""A reviewer on a phone (390 px): "what did worker X do today or yesterday, and was
anything denied?" is two clicks from the worker's page (Activity, then a time preset),
the results and their counts show above the fold with the filter form folded, and the
worker picker lists a worker once even when the URL names it (issue 27, #4)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from pytest_django.live_server_helper import LiveServer

from apps.audit.tests.helpers import broker_event
from apps.organizations.models import Organization
from apps.policies.models import Role
from apps.workers.services import worker_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDTH, HEIGHT = 390, 900


def test_worker_activity_today_and_yesterday_in_two_clicks(
    open_as: Any, live_server: LiveServer, org: Organization, owner: User, reviewer: User
) -> None:
    role = Role.objects.create(organization=org, name="reader")
    bot = worker_create(organization=org, name="triage-bot", default_role=role, actor=owner)
    other = worker_create(organization=org, name="other-bot", default_role=role, actor=owner)
    for decision in ("allowed", "allowed", "allowed", "denied"):
        broker_event(
            org,
            decision=decision,
            outcome="success" if decision == "allowed" else "denied",
            worker_id=bot.pk,
            actor_id=bot.pk,
            actor_label=bot.name,
        )
    broker_event(org, decision="denied", outcome="denied", worker_id=other.pk, actor_id=other.pk)

    page = open_as(reviewer, width=WIDTH)
    base = live_server.url
    page.goto(f"{base}/o/{org.slug}/workers/{bot.pk}/")
    page.get_by_role("link", name="Activity", exact=True).click()  # click 1
    page.get_by_role("link", name="Today").click()  # click 2
    page.wait_for_load_state()
    summary = page.get_by_test_id("call-summary")
    assert "4 agent calls in this window, 1 denied" in " ".join(summary.inner_text().split())
    first_row = page.locator("table.audit-table tbody tr").first
    box = first_row.bounding_box()
    assert box is not None
    assert box["y"] < HEIGHT, box  # the results are above the fold
    assert not page.locator("form.audit-filters").is_visible()  # folded under its summary
    assert "Worker = triage-bot" in page.locator("details.audit-filters-wrap summary").inner_text()
    calls = page.locator("table.audit-table tbody tr", has_text="broker.execute")
    assert calls.count() == 4  # and the worker's own events (created)

    # The denied one is one more click, in the same window.
    page.get_by_role("link", name="1 denied").click()
    page.wait_for_load_state()
    assert page.locator("table.audit-table tbody tr").count() == 1
    assert "Denied" in page.locator('td[data-label="Decision"]').first.inner_text()

    # Yesterday: midnight to midnight (UTC), the worker kept; nothing happened then.
    page.get_by_role("link", name="Yesterday").click()
    page.wait_for_load_state()
    query = parse_qs(urlsplit(page.url).query)
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    assert query["start"] == [(midnight - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")]
    assert query["end"] == [midnight.strftime("%Y-%m-%dT%H:%M")]
    assert query["worker"] == [str(bot.pk)]
    assert "0 agent calls in this window" in page.get_by_test_id("call-summary").inner_text()

    # The picker lists the worker once, and selects it when the URL names it.
    page.goto(f"{base}/o/{org.slug}/audit/?worker=triage-bot")
    options = page.eval_on_selector_all("#id_worker option", "els => els.map(e => e.textContent)")
    assert options.count("triage-bot") == 1, options
    assert page.locator("#id_worker").input_value() == str(bot.pk)
    assert page.locator("table.audit-table tbody tr", has_text="broker.execute").count() == 4


def test_every_worker_token_connection_and_role_links_to_its_activity(
    open_as: Any, live_server: LiveServer, org: Organization, owner: User
) -> None:
    from apps.connections.models import Connection
    from apps.workers.services import token_mint

    role = Role.objects.create(organization=org, name="reader")
    bot = worker_create(organization=org, name="triage-bot", default_role=role, actor=owner)
    token, _ = token_mint(worker=bot, actor=owner, name="ci")
    connection = Connection.objects.create(
        organization=org, provider_key="sandbox", name="sbx", auth_type="api_key", api_key="k"
    )
    page = open_as(owner)
    base = live_server.url
    audit = f"/o/{org.slug}/audit/"
    links = {
        f"/o/{org.slug}/workers/{bot.pk}/": f"{audit}?worker={bot.pk}",
        f"/o/{org.slug}/roles/{role.pk}/": f"{audit}?role={role.pk}",
        f"/o/{org.slug}/connections/": f"{audit}?connection={connection.pk}",
    }
    for where, target in links.items():
        page.goto(f"{base}{where}")
        assert page.locator(f'a[href="{target}"]').count() >= 1, (where, target)
    page.goto(f"{base}/o/{org.slug}/workers/{bot.pk}/")
    page.locator(f'a[href="{audit}?token={token.public_id}"]').click()
    page.wait_for_load_state()
    assert page.locator("#id_token").input_value() == token.public_id
