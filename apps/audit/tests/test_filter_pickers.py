"""Audit filters pick workers, connections, providers and members by name, on the
page and in the management API alike (django-filter), and old id URLs still work."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from apps.accounts.services import personal_token_mint
from apps.audit.tests.helpers import broker_event
from apps.connections.models import Connection
from apps.organizations.models import Organization
from apps.policies.models import Role
from apps.workers.models import Worker

pytestmark = pytest.mark.django_db


@pytest.fixture
def named(org: Organization, other_org: Organization) -> Any:
    role = Role.objects.create(organization=org, name="r")
    bot = Worker.objects.create(organization=org, name="triage-bot", default_role=role)
    other = Worker.objects.create(organization=org, name="other-bot", default_role=role)
    conn = Connection.objects.create(
        organization=org, provider_key="sandbox", name="sandbox-demo", auth_type="oauth2"
    )
    # Same names in another organization must never widen this one's filter.
    foreign_role = Role.objects.create(organization=other_org, name="r")
    Worker.objects.create(organization=other_org, name="triage-bot", default_role=foreign_role)
    mine = broker_event(org, worker_id=bot.pk, connection_id=conn.pk, provider="sandbox")
    broker_event(org, worker_id=other.pk, connection_id=conn.pk + 1000)
    return bot, conn, mine


def page(client: Any, org: Organization, **params: Any) -> Any:
    return client.get(reverse("audit:list", kwargs={"org_slug": org.slug}), params)


def test_pickers_offer_names(client: Client, org: Organization, reviewer: User, named: Any) -> None:
    bot, conn, _ = named
    client.force_login(reviewer)
    html = page(client, org).content.decode()
    assert f'<option value="{bot.pk}">triage-bot</option>' in html
    assert f'<option value="{conn.pk}">sandbox-demo (sandbox)</option>' in html
    assert '<option value="sandbox">' in html  # the provider picker, by display name
    assert "reviewer@acme.test</option>" in html  # members by email
    assert 'list="id_action-options"' in html
    assert '<option value="token.">' in html
    assert "Worker id" not in html
    assert "Connection id" not in html


def test_names_and_old_ids_select_the_same_events(
    client: Client, org: Organization, reviewer: User, named: Any
) -> None:
    bot, conn, mine = named
    client.force_login(reviewer)
    by_id = [e.pk for e in page(client, org, worker=bot.pk).context["page"].events]
    by_name = [e.pk for e in page(client, org, worker="triage-bot").context["page"].events]
    assert by_id == by_name == [mine.pk]
    by_conn = page(client, org, connection="sandbox-demo").context["page"].events
    assert [e.pk for e in by_conn] == [mine.pk]
    assert [e.pk for e in page(client, org, connection=conn.pk).context["page"].events] == [mine.pk]
    # The picked value stays selected.
    assert (
        f'<option value="{bot.pk}" selected>' in page(client, org, worker=bot.pk).content.decode()
    )


@pytest.mark.usefixtures("named")
def test_unknown_name_is_a_clear_error(client: Client, org: Organization, reviewer: User) -> None:
    client.force_login(reviewer)
    response = page(client, org, worker="nobody")
    assert response.context["page"] is None
    assert "No worker named “nobody”" in response.content.decode()


def test_the_api_takes_the_same_names(
    client: Client, org: Organization, reviewer: User, named: Any
) -> None:
    bot, _, mine = named
    _, raw = personal_token_mint(user=reviewer, organization=org, name="t")
    auth: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    url = reverse("org_api:audit-event-list", kwargs={"org_slug": org.slug})
    body = client.get(url, {"worker": "triage-bot"}, **auth).json()
    assert [e["id"] for e in body["results"]] == [mine.pk]
    assert [e["id"] for e in client.get(url, {"worker": bot.pk}, **auth).json()["results"]] == [
        mine.pk
    ]
    bad = client.get(url, {"connection": "nope"}, **auth)
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_filter"


def test_member_filter_by_picker_id_or_email(
    client: Client, org: Organization, reviewer: User, admin: User
) -> None:
    from apps.audit.services import audit_record

    event = audit_record(
        action="worker.created",
        organization=org,
        actor_type="user",
        actor_id=admin.pk,
        actor_label=admin.email,
    )
    client.force_login(reviewer)
    for value in (admin.pk, admin.email):
        assert [e.pk for e in page(client, org, member=value).context["page"].events] == [event.pk]
