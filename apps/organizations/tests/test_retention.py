"""An organization's audit retention: Settings page and management API (the service and
the archives themselves are apps/audit/tests/test_archive.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.organizations.models import Organization

pytestmark = pytest.mark.django_db
URL = "/api/v1/orgs/acme/settings/"
MESSAGE = "Choose a retention between 1 and 120 months"


def api(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def retention_events(org: Organization) -> list[Any]:
    return list(
        AuditEvent.objects.filter(organization=org, action="audit.retention_set")
        .order_by("id")
        .values_list("metadata", flat=True)
    )


def test_an_admin_sets_and_clears_the_retention_over_the_api(
    org: Organization, admin: User
) -> None:
    response = api(admin).patch(URL, {"audit_retention_months": 13}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["audit_retention_months"] == 13
    assert org.audit_retention_months == 13
    # Another field alone leaves the retention as it is.
    api(admin).patch(URL, {"max_token_days": 30}, format="json")
    assert org.audit_retention_months == 13
    cleared = api(admin).patch(URL, {"audit_retention_months": None}, format="json")
    assert cleared.json()["audit_retention_months"] is None
    assert retention_events(org) == [{"from": None, "to": 13}, {"from": 13, "to": None}]


@pytest.mark.parametrize("bad", [0, -1, 121, 10_000, "twelve", 1.5])
def test_bad_retention_over_the_api_is_400_with_a_clear_message(
    org: Organization, admin: User, bad: Any
) -> None:
    response = api(admin).patch(URL, {"audit_retention_months": bad}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert MESSAGE in str(body), body
    assert org.audit_retention_months is None
    assert retention_events(org) == []


def test_a_reviewer_cannot_change_the_retention(org: Organization, reviewer: User) -> None:
    response = api(reviewer).patch(URL, {"audit_retention_months": 1}, format="json")
    assert response.status_code == 403
    assert org.audit_retention_months is None


def test_the_settings_page_sets_the_retention_and_refuses_bad_input(
    client: Client, org: Organization, admin: User
) -> None:
    client.force_login(admin)
    url = reverse("orgs:settings", kwargs={"org_slug": org.slug})
    bad = client.post(url, {"name": "Acme", "audit_retention_months": "0"})
    assert bad.status_code == 400
    assert MESSAGE in bad.content.decode()
    assert org.audit_retention_months is None
    saved = client.post(url, {"name": "Acme", "audit_retention_months": "24"})
    assert saved.status_code == 302
    assert org.audit_retention_months == 24
    page = client.get(url).content.decode()
    assert 'name="audit_retention_months"' in page
    assert 'value="24"' in page
    assert retention_events(org) == [{"from": None, "to": 24}]


def test_a_reviewer_sees_the_retention_read_only(
    client: Client, org: Organization, admin: User, reviewer: User
) -> None:
    api(admin).patch(URL, {"audit_retention_months": 6}, format="json")
    client.force_login(reviewer)
    page = client.get(reverse("orgs:settings", kwargs={"org_slug": org.slug})).content.decode()
    assert "6 months after each month, then archived" in page
