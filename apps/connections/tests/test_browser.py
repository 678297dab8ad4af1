"""The Done-when story in headless Chromium: an admin connects the Sandbox in the
browser (consent page and all) and sees the connection in the inventory."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.connections.models import Connection, ConnectionStatus
from apps.connections.tests.conftest import Sandbox
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_connects_the_sandbox_in_the_browser(
    sandbox: Sandbox, admin: User, browser: Any
) -> None:
    app = sandbox.application
    app.skip_authorization = False  # show the real consent page
    app.save()
    base = sandbox.base_url
    page = browser.new_page()
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(admin.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In", exact=True).click()
    page.wait_for_load_state()

    page.goto(f"{base}/o/acme/connections/")
    page.get_by_role("link", name="Connect an account").click()
    page.get_by_role("link", name="Connect Sandbox").click()
    page.get_by_label("Connection name").fill("sandbox-browser")
    page.get_by_role("button", name="Continue to Sandbox").click()
    page.wait_for_load_state()
    assert "/sandbox/o/authorize/" in page.url
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_load_state()

    assert page.url == f"{base}/o/acme/connections/"
    row = page.get_by_role("row", name=re.compile("sandbox-browser"))
    assert "Active" in row.inner_text()
    assert admin.email in row.inner_text()
    connection = Connection.objects.get(name="sandbox-browser")
    assert connection.status == ConnectionStatus.ACTIVE
    assert connection.access_token not in page.content()
