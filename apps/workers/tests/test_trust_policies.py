"""Trust policies through the management API and the worker's page: who may add and
remove them, the standard error body, and the audit trail (the exchange itself is tested
against a real issuer in apps/mcpauth/tests/test_token_exchange.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.organizations.models import Organization
from apps.workers.models import TrustPolicy, Worker

pytestmark = pytest.mark.django_db

GITHUB = {
    "preset": "github",
    "conditions": [
        {"claim": "repository", "value": "acme/triage"},
        {"claim": "ref", "value": "refs/heads/main"},
    ],
    "max_minutes": 15,
}


def api_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def policies_url(worker: Worker) -> str:
    return f"/api/v1/orgs/{worker.organization.slug}/workers/{worker.pk}/trust-policies/"


def test_an_admin_adds_reads_and_deletes_a_policy(worker: Worker, admin: User) -> None:
    api = api_for(admin)
    created = api.post(
        policies_url(worker), {**GITHUB, "role": worker.default_role_id}, format="json"
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["issuer"] == "https://token.actions.githubusercontent.com"
    assert body["audience"]  # Grantry's URL by default
    assert body["role_name"] == worker.default_role.name
    listed = api.get(policies_url(worker)).json()
    assert [p["id"] for p in listed["results"]] == [body["id"]]
    assert api.delete(f"{policies_url(worker)}{body['id']}/").status_code == 204
    assert not TrustPolicy.objects.exists()
    actions = list(
        AuditEvent.objects.filter(action__startswith="worker.trust_policy").values_list(
            "action", flat=True
        )
    )
    assert sorted(actions) == ["worker.trust_policy_added", "worker.trust_policy_removed"]


def test_a_policy_that_would_let_anyone_in_is_refused(worker: Worker, admin: User) -> None:
    response = api_for(admin).post(
        policies_url(worker),
        {
            "preset": "github",
            "conditions": [{"claim": "repository", "value": "*"}],
            "role": worker.default_role_id,
        },
        format="json",
    )
    assert response.status_code == 400
    assert "conditions" in response.json()["error"]["details"]["fields"]
    assert not TrustPolicy.objects.exists()


def test_a_reviewer_reads_but_does_not_write(worker: Worker, reviewer: User) -> None:
    api = api_for(reviewer)
    assert api.get(policies_url(worker)).status_code == 200
    refused = api.post(
        policies_url(worker), {**GITHUB, "role": worker.default_role_id}, format="json"
    )
    assert refused.status_code == 403
    assert not TrustPolicy.objects.exists()


def test_another_organization_gets_404(
    worker: Worker, outsider: User, other_org: Organization
) -> None:
    api = api_for(outsider)
    assert api.get(policies_url(worker)).status_code == 404
    own_slug = f"/api/v1/orgs/{other_org.slug}/workers/{worker.pk}/trust-policies/"
    assert api.post(own_slug, {**GITHUB, "role": 1}, format="json").status_code == 404


def test_the_worker_page_adds_and_deletes_a_policy(worker: Worker, admin: User) -> None:
    client = Client()
    client.force_login(admin)
    page = f"/o/{worker.organization.slug}/workers/{worker.pk}/"
    added = client.post(
        f"{page}trust-policies/new/",
        {
            "preset": "kubernetes",
            "issuer": "https://kubernetes.default.svc.cluster.local",
            "audience": "",
            "conditions": "sub = system:serviceaccount:agents:triage",
            "role": worker.default_role_id,
            "max_minutes": 10,
        },
    )
    assert added.status_code == 302
    policy = TrustPolicy.objects.get()
    assert policy.conditions == [{"claim": "sub", "value": "system:serviceaccount:agents:triage"}]
    shown = client.get(page).content.decode()
    assert "system:serviceaccount:agents:triage" in shown
    assert f"audience={worker.organization.slug}/{worker.name}" in shown
    delete_url = f"{page}trust-policies/{policy.pk}/delete/"
    asked = client.post(delete_url)
    assert asked.status_code == 200  # the confirmation page first
    assert TrustPolicy.objects.exists()
    client.post(delete_url, {"confirmed": "yes"})
    assert not TrustPolicy.objects.exists()


def test_a_bad_policy_from_the_page_is_a_message_not_a_row(worker: Worker, admin: User) -> None:
    client = Client()
    client.force_login(admin)
    page = f"/o/{worker.organization.slug}/workers/{worker.pk}/"
    response = client.post(
        f"{page}trust-policies/new/",
        {
            "preset": "github",
            "conditions": "ref = refs/heads/main",
            "role": worker.default_role_id,
            "max_minutes": 10,
        },
        follow=True,
    )
    assert "repository" in response.content.decode()
    assert not TrustPolicy.objects.exists()


def test_disabling_a_policy_by_api_and_page_is_audited(worker: Worker, admin: User) -> None:
    api = api_for(admin)
    created = api.post(
        policies_url(worker), {**GITHUB, "role": worker.default_role_id}, format="json"
    ).json()
    detail = f"{policies_url(worker)}{created['id']}/"
    off = api.patch(detail, {"enabled": False}, format="json")
    assert off.status_code == 200, off.content
    assert off.json()["enabled"] is False
    client = Client()
    client.force_login(admin)
    page = f"/o/{worker.organization.slug}/workers/{worker.pk}/"
    client.post(f"{page}trust-policies/{created['id']}/toggle/")  # enabling asks nothing
    assert TrustPolicy.objects.get().enabled is True
    asked = client.post(f"{page}trust-policies/{created['id']}/toggle/")
    assert asked.status_code == 200  # disabling is confirmed first
    assert TrustPolicy.objects.get().enabled is True
    client.post(f"{page}trust-policies/{created['id']}/toggle/", {"confirmed": "yes"})
    assert TrustPolicy.objects.get().enabled is False
    assert AuditEvent.objects.filter(action="worker.trust_policy_changed").count() == 3
