"""A new organization tries the Sandbox over OAuth: in development the Sandbox
registers the organization's OAuth app in one click (issue 13, #3), and the new
account starts with the demo projects, so the README's list and write examples work
for it (issue 27, #2)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from pytest_django.live_server_helper import LiveServer

from apps.audit.models import AuditEvent
from apps.broker.tests.conftest import make_agent
from apps.connections.models import Connection, ConnectionStatus, ProviderApp
from apps.organizations.models import Organization
from apps.sandbox.models import Project, Task
from apps.sandbox.services import sandbox_account_start
from tests.factories import PASSWORD


@pytest.mark.django_db
def test_the_button_needs_the_sandbox_enabled(admin_client: Client, org: Organization) -> None:
    url = f"/o/{org.slug}/connections/connect/sandbox/"
    with override_settings(GRANTRY_SANDBOX_ENABLED=False):
        assert 'data-testid="sandbox-one-click"' not in admin_client.get(url).content.decode()
        assert admin_client.post(url, {"kind": "sandbox_app"}).status_code == 404
    assert not ProviderApp.objects.filter(organization=org).exists()
    assert 'data-testid="sandbox-one-click"' in admin_client.get(url).content.decode()


@pytest.mark.django_db
def test_members_cannot_register(client: Client, org: Organization, member: User) -> None:
    client.force_login(member)
    response = client.post(f"/o/{org.slug}/connections/connect/sandbox/", {"kind": "sandbox_app"})
    assert response.status_code == 403
    assert not ProviderApp.objects.filter(organization=org).exists()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_new_org_registers_the_sandbox_app_and_connects_over_oauth(
    browser: Any, live_server: LiveServer, org: Organization, admin: User
) -> None:
    base = live_server.url
    with override_settings(GRANTRY_BASE_URL=base, GRANTRY_SANDBOX_URL=""):
        page = browser.new_page()
        page.goto(f"{base}/accounts/login/")
        page.get_by_label("Email").fill(admin.email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign In", exact=True).click()
        page.wait_for_load_state()
        page.goto(f"{base}/o/acme/connections/connect/")
        assert "app not set up yet" not in page.content()  # not on every provider's card
        page.goto(f"{base}/o/acme/connections/connect/sandbox/")
        assert page.get_by_test_id("sandbox-one-click").is_visible()
        # One click: continuing registers the org's Sandbox OAuth app, then signs in.
        page.get_by_label("Connection name").fill("my-sandbox")
        page.get_by_role("button", name="Continue to Sandbox").click()
        page.wait_for_load_state()
        assert "/sandbox/o/authorize/" in page.url, page.url
        assert "authorizing adds two demo projects" in page.content()
        assert not Project.objects.filter(owner=admin).exists()
        page.get_by_role("button", name="Authorize").click()
        page.wait_for_load_state()
        assert page.url == f"{base}/o/acme/connections/"
        connection = Connection.objects.get(name="my-sandbox")
        assert connection.status == ConnectionStatus.ACTIVE
        assert (
            AuditEvent.objects.filter(organization=org, action="provider_app.created").count() == 1
        )
        assert Project.objects.filter(owner=admin).count() == 2

        # The README's calls, for this new organization: list the projects, then create a
        # task in one of them (a real 201 upstream, not a 404 wrapped in a 200).
        agent = make_agent(
            org,
            connection=connection,
            rules=[
                {"kind": "action", "provider_key": "sandbox", "action_pattern": pattern}
                for pattern in ("sandbox.list_projects", "sandbox.create_task")
            ],
        )
        headers = {"Authorization": f"Bearer {agent.raw}"}
        listed = page.request.post(
            f"{base}/api/v1/actions/sandbox.list_projects/execute",
            data={"input": {}},
            headers=headers,
        )
        assert listed.status == 200, listed.text()
        body = listed.json()
        assert body["status"] == 200, body
        project_id = body["body"]["projects"][0]["id"]
        created = page.request.post(
            f"{base}/api/v1/actions/sandbox.create_task/execute",
            data={"input": {"project_id": project_id, "title": "Write the report"}},
            headers=headers,
        )
        assert created.status == 200, created.text()
        assert created.json()["status"] == 201, created.json()
    assert Task.objects.filter(project_id=project_id, title="Write the report").count() == 1

    # Authorizing again does not add the demo projects twice.
    assert sandbox_account_start(user=admin) is False
    assert Project.objects.filter(owner=admin).count() == 2
