"""Destructive actions in a real browser: one server-rendered confirmation that
names what stops working, then Undo where it can be undone (issue 13, #10)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from pytest_django.live_server_helper import LiveServer

from apps.organizations.models import Organization
from apps.policies.models import Role
from apps.workers.models import Worker
from apps.workers.services import token_mint, worker_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_disable_worker_confirm_then_undo(
    open_as: Any, live_server: LiveServer, org: Organization, admin: User
) -> None:
    role = Role.objects.create(organization=org, name="reader")
    worker = worker_create(
        organization=org, name="demo-agent", default_role=role, owner=admin, actor=admin
    )
    token_mint(worker=worker, actor=admin)
    token_mint(worker=worker, actor=admin)
    page = open_as(admin)
    dialogs: list[str] = []

    def dismiss(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.goto(f"{live_server.url}/o/{org.slug}/workers/{worker.pk}/")
    page.get_by_role("button", name="Disable worker").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", level=1).inner_text() == "Disable demo-agent?"
    # Focus is on the confirmation's button: Enter confirms, Tab reaches Cancel.
    focused = page.evaluate("document.activeElement.textContent")
    assert focused.strip().startswith("Disable"), focused
    assert "demo-agent's 2 tokens stop working immediately" in page.locator("main").inner_text()
    assert Worker.objects.get(pk=worker.pk).status == "active"
    page.get_by_role("button", name="Disable worker").click()
    page.wait_for_load_state()
    assert Worker.objects.get(pk=worker.pk).status == "disabled"
    page.get_by_role("button", name="Undo: enable demo-agent again").click()
    page.wait_for_load_state()
    assert Worker.objects.get(pk=worker.pk).status == "active"
    assert "demo-agent is enabled" in page.locator("main").inner_text()
    assert dialogs == []  # never a browser confirm()


def test_cancel_leaves_everything_as_it_was(
    open_as: Any, live_server: LiveServer, org: Organization, admin: User
) -> None:
    role = Role.objects.create(organization=org, name="reader")
    worker = worker_create(
        organization=org, name="demo-agent", default_role=role, owner=admin, actor=admin
    )
    token, _ = token_mint(worker=worker, actor=admin)
    page = open_as(admin)
    page.goto(f"{live_server.url}/o/{org.slug}/workers/{worker.pk}/")
    page.get_by_role("button", name=f"Revoke… {token.public_id}").click()
    page.wait_for_load_state()
    assert "stops working immediately" in page.locator("main").inner_text()
    page.get_by_role("link", name="Cancel").click()
    page.wait_for_load_state()
    assert page.url.endswith(f"/workers/{worker.pk}/")
    token.refresh_from_db()
    assert token.revoked_at is None
