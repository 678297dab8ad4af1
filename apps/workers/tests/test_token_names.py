"""Worker tokens have a name (required when minting in the dashboard), show who minted
them, and expire by a preset or a number of days; an MCP OAuth access token (an hour,
replaced by its client's refresh) never raises "expires within 7 days" (issue 27, #5)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.organizations.models import Organization
from apps.workers.models import WorkerToken
from apps.workers.services import token_expiry_warnings_send, token_mint, worker_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def worker(org: Organization, admin: User, role: Any) -> Any:
    return worker_create(organization=org, name="triage-bot", default_role=role, actor=admin)


def test_minting_needs_a_name_and_takes_a_preset(
    client: Client, org: Organization, admin: User, worker: Any
) -> None:
    client.force_login(admin)
    mint = f"/o/{org.slug}/workers/{worker.pk}/mint/"
    page = client.get(f"/o/{org.slug}/workers/{worker.pk}/").content.decode()
    for preset in ("1 day", "7 days", "30 days", "90 days", "Custom"):
        assert preset in page
    assert re.search(r'<input[^>]*name="expires"[^>]*value="30"[^>]*checked', page)

    nameless = client.post(mint, {"name": "  ", "expires": "7"})
    assert nameless.status_code == 400
    assert "This field is required." in nameless.content.decode()
    custom_without_days = client.post(mint, {"name": "ci", "expires": "custom"})
    assert "Say in how many days" in custom_without_days.content.decode()
    assert not WorkerToken.objects.filter(worker=worker).exists()

    before = timezone.now()
    assert client.post(mint, {"name": "CI  deploy", "expires": "7"}).status_code == 302
    token = WorkerToken.objects.get(worker=worker)
    assert token.name == "CI deploy"
    assert token.created_by == admin
    lifetime = token.expires_at - before
    assert timedelta(days=7) - timedelta(minutes=1) < lifetime <= timedelta(days=7, minutes=1)
    event = AuditEvent.objects.get(action="token.minted")
    assert event.metadata["name"] == "CI deploy"

    detail = client.get(f"/o/{org.slug}/workers/{worker.pk}/").content.decode()
    assert "CI deploy" in detail
    assert f"by {admin.email}" in detail

    custom = client.post(mint, {"name": "laptop", "expires": "custom", "expires_in_days": "3"})
    assert custom.status_code == 302
    laptop = WorkerToken.objects.get(worker=worker, name="laptop")
    assert laptop.expires_at - timezone.now() < timedelta(days=3, minutes=1)

    # The API takes the name too and shows name and creator.
    api = APIClient()
    api.force_authenticate(admin)
    minted = api.post(
        f"/api/v1/orgs/{org.slug}/workers/{worker.pk}/tokens/",
        {"name": "api-minted", "expires_in_days": 7},
        format="json",
    )
    assert minted.status_code == 201, minted.content
    assert minted.json()["name"] == "api-minted"
    assert minted.json()["created_by_email"] == admin.email


def test_short_lived_tokens_do_not_raise_the_expiry_warning(
    client: Client, org: Organization, admin: User, worker: Any
) -> None:
    now = timezone.now()
    mcp, _ = token_mint(worker=worker, actor=None, name="")
    WorkerToken.objects.filter(pk=mcp.pk).update(
        oauth_client="Claude Code", expires_at=now + timedelta(hours=1)
    )
    soon, _ = token_mint(worker=worker, expires_in_days=3, actor=admin, name="three days")
    token_mint(worker=worker, expires_in_days=30, actor=admin, name="thirty days")
    expiring = WorkerToken.objects.for_organization(org).expiring(within=timedelta(days=7))
    assert list(expiring) == [WorkerToken.objects.get(pk=soon.pk)]
    assert not WorkerToken.objects.get(pk=mcp.pk).expires_soon()
    assert WorkerToken.objects.get(pk=soon.pk).expires_soon()
    assert token_expiry_warnings_send() == 1

    client.force_login(admin)
    overview = client.get(f"/o/{org.slug}/").content.decode()
    assert "1 worker token(s) expire within 7 days." in overview
    detail = client.get(f"/o/{org.slug}/workers/{worker.pk}/").content.decode()
    assert detail.count("Expires within 7 days") == 1
    assert "MCP client Claude Code" in detail
