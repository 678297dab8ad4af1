"""`seed_demo` (what `make run` runs): the demo org, a connected Sandbox, the demo
worker and real agent traffic a reviewer can filter, open and export."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils.html import escape
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from apps.audit.models import AuditEvent
from apps.audit.verify import verify_chains
from apps.connections.models import Connection, ConnectionStatus
from apps.organizations.models import Organization

pytestmark = pytest.mark.django_db(transaction=True)


def test_seed_demo_gives_reviewers_denied_calls_to_inspect(
    client: Client, live_server: LiveServer, settings: Settings
) -> None:
    settings.GRANTRY_SANDBOX_URL = f"{live_server.url}/sandbox"
    settings.GRANTRY_BASE_URL = live_server.url
    call_command("seed_demo")
    call_command("seed_demo")  # idempotent: no second round of traffic

    org = Organization.objects.get(slug="demo")
    connection = Connection.objects.get(organization=org, name="sandbox-demo")
    assert connection.status == ConnectionStatus.ACTIVE
    denied = AuditEvent.objects.filter(organization=org, decision="denied")
    assert denied.count() == 3
    assert all(e.reason for e in denied)
    assert all(verify.ok for verify in verify_chains(organization_ids=[org.pk]))

    assert client.login(username="reviewer@grantry.local", password="grantry-demo-password")
    worker_id = denied.first().worker_id
    listing = client.get(f"/o/demo/audit/?worker={worker_id}&decision=denied")
    assert listing.status_code == 200
    event = denied.order_by("id").first()
    assert f"/o/demo/audit/events/{event.pk}/" in listing.content.decode()
    detail = client.get(f"/o/demo/audit/events/{event.pk}/")
    assert escape(event.reason) in detail.content.decode()
    for fmt in ("csv", "jsonl"):
        export = client.post(
            f"/o/demo/audit/export/?worker={worker_id}&decision=denied", {"format": fmt}
        )
        assert export.status_code == 200, (fmt, export.status_code)
        body = export.getvalue().decode()
        assert "sandbox.delete_task" in body
