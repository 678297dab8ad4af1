"""When the audit trail cannot be written, every surface answers 503
`audit_unavailable` (JSON for the APIs and MCP, a page for the dashboard) and the
change it would have described rolls back.

The failure is real: the test's connection switches to a non-superuser role that
may not INSERT into the audit table (created inside the test's transaction, so it
disappears with it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.services import personal_token_mint
from apps.audit.models import AuditEvent
from apps.organizations.models import Organization
from apps.workers.models import Worker
from apps.workers.tests.conftest import make_role

pytestmark = pytest.mark.django_db

UNKNOWN_TOKEN = "gry_" + "A" * 49


@contextmanager
def audit_insert_revoked() -> Iterator[Any]:
    """Run the block as a role without INSERT on audit_auditevent."""
    role = f"grantry_noaudit_{os.getpid()}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} NOLOGIN")
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        cursor.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
        )
        cursor.execute(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}")
        cursor.execute(f"REVOKE INSERT ON audit_auditevent FROM {role}")
        cursor.execute(f"SET ROLE {role}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
            cursor.execute(f"DROP OWNED BY {role}")
            cursor.execute(f"DROP ROLE {role}")


def assert_json_503(response: Any) -> None:
    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "audit_unavailable"
    assert error["request_id"] == response["X-Request-Id"]
    assert int(response["Retry-After"]) > 0


def test_whoami_with_a_bad_token() -> None:
    with audit_insert_revoked():
        response = APIClient().get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {UNKNOWN_TOKEN}")
    assert_json_503(response)


def test_mcp_with_a_bad_token() -> None:
    with audit_insert_revoked():
        response = APIClient().post(
            "/mcp",
            {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            format="json",
            HTTP_AUTHORIZATION=f"Bearer {UNKNOWN_TOKEN}",
        )
    assert_json_503(response)


def test_management_write_with_a_session_rolls_back(org: Organization, admin: User) -> None:
    role = make_role(org, "reader")
    api = APIClient()
    api.force_login(admin)
    with audit_insert_revoked():
        response = api.post(
            f"/api/v1/orgs/{org.slug}/workers/",
            {"name": "ci-bot", "default_role": role.pk},
            format="json",
        )
    assert_json_503(response)
    assert not Worker.objects.filter(name="ci-bot").exists()


def test_management_write_with_a_personal_token_rolls_back(org: Organization, admin: User) -> None:
    role = make_role(org, "reader")
    _, raw = personal_token_mint(user=admin, organization=org, name="script")
    before = AuditEvent.objects.count()
    with audit_insert_revoked():
        response = APIClient().post(
            f"/api/v1/orgs/{org.slug}/workers/",
            {"name": "script-bot", "default_role": role.pk},
            format="json",
            HTTP_AUTHORIZATION=f"Bearer {raw}",
        )
    assert_json_503(response)
    assert not Worker.objects.filter(name="script-bot").exists()
    assert AuditEvent.objects.count() == before


def test_dashboard_write_shows_a_503_page_and_rolls_back(org: Organization, admin: User) -> None:
    role = make_role(org, "reader")
    client = Client()
    client.force_login(admin)
    with audit_insert_revoked():
        response = client.post(
            f"/o/{org.slug}/workers/new/", {"name": "triage-bot", "default_role": role.pk}
        )
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "Temporarily unavailable" in html
    assert "audit_unavailable" in html
    assert 'class="topbar"' in html  # the styled page, not Django's bare one
    assert not Worker.objects.filter(name="triage-bot").exists()


def test_whoami_when_the_current_month_has_no_partition() -> None:
    """The scheduler failed to create the month (or it was detached): the append has
    nowhere to go, and the surface answers 503 rather than acting unaudited."""
    from django.utils import timezone

    from apps.audit import partitions

    name = partitions.name_for(partitions.month_start(timezone.now()))
    with connection.cursor() as cursor:  # undone with the test's transaction
        cursor.execute(f"ALTER TABLE audit_auditevent DETACH PARTITION {name}")
    response = APIClient().get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {UNKNOWN_TOKEN}")
    assert_json_503(response)
