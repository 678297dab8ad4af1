"""The OpenAPI import in a real browser, under the strict CSP: the page follows the
background reading by itself (htmx polling, then a reload to the next step), the admin
chooses operations by tag, reviews the drafts and saves them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from apps.organizations.models import Organization
from apps.providers.models import ImportStatus, OpenAPIImport
from apps.providers.services import custom_provider_create

pytestmark = [pytest.mark.browser, pytest.mark.celery, pytest.mark.django_db(transaction=True)]
DOCUMENT = (
    Path(__file__).resolve().parents[2] / "apps/providers/tests/openapi/train-travel-3.1.yaml"
)


@pytest.mark.usefixtures("celery_worker")
def test_upload_follow_the_reading_choose_by_tag_review_and_save(
    open_as: Any,
    live_server: LiveServer,
    org: Organization,
    admin: User,
    settings: Settings,
) -> None:
    settings.GRANTRY_OPENAPI_MAX_OPERATIONS = 5  # the document's 7 need a choice
    crm = custom_provider_create(
        organization=org,
        actor=admin,
        slug="crm",
        display_name="Acme CRM",
        auth_type="api_key",
        api_base_url="https://crm.example.com/api",
    )
    page = open_as(admin)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{live_server.url}/o/{org.slug}/providers/custom/crm/import/")
    page.set_input_files("input[name=document]", str(DOCUMENT))
    page.get_by_role("button", name="Read the document").click()
    # The job page polls until the document is read, then reloads into the choice.
    page.get_by_role("heading", name="Choose the operations to draft").wait_for(timeout=30_000)
    assert "Train Travel API" in page.locator("h1").inner_text()
    page.get_by_label("Bookings (4)").check()
    page.get_by_role("button", name="Show matching operations").click()
    page.wait_for_load_state()
    assert "4 operations match (4 importable)." in page.locator("main").inner_text()
    page.get_by_role("button", name="Draft the checked operations").click()
    page.get_by_role("heading", name="Choose the operations to import").wait_for(timeout=30_000)
    job = OpenAPIImport.objects.get()
    assert job.status == ImportStatus.READY
    assert len(job.chosen) == 4
    page.get_by_role("button", name="Import the chosen operations").click()
    page.wait_for_load_state()
    assert "Imported 4 action(s) into Acme CRM from Train Travel API" in page.inner_text("body")
    assert sorted(crm.actions.values_list("name", flat=True)) == sorted(
        d["name"] for d in job.drafts
    )
    assert crm.actions.count() == 4
    assert not [e for e in errors if "Content Security Policy" in e]
