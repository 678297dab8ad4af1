"""Forms that looked unfinished (issue 27, #8): the SIEM sink form shows the webhook or the
syslog fields, not both, with styled inputs and an empty state; the MCP consent shows the
new worker's name and role only when "A new worker…" is picked."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from apps.organizations.models import Organization
from apps.policies.models import Role
from apps.workers.services import worker_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_sink_form_shows_one_kind_at_a_time(
    open_as: Any, live_server: LiveServer, org: Organization, owner: User
) -> None:
    page = open_as(owner)
    page.goto(f"{live_server.url}/o/{org.slug}/audit/sinks/")
    assert page.get_by_test_id("sinks-empty").is_visible()
    webhook = page.locator("fieldset", has_text="Webhook")
    syslog = page.locator("fieldset", has_text="Syslog")
    assert webhook.is_visible()
    assert not syslog.is_visible()
    page.get_by_label("Kind").select_option("syslog")
    assert syslog.is_visible()
    assert not webhook.is_visible()
    host = page.get_by_label("Host")
    assert host.evaluate("e => getComputedStyle(e).borderRadius") == "6px"  # the site's inputs


def test_consent_shows_new_worker_fields_only_for_a_new_worker(
    browser: Any, live_server: LiveServer, org: Organization, owner: User, settings: Settings
) -> None:
    from tests.factories import PASSWORD

    settings.GRANTRY_BASE_URL = live_server.url
    role = Role.objects.create(organization=org, name="reader")
    worker_create(organization=org, name="triage-bot", default_role=role, actor=owner)
    page = browser.new_context().new_page()
    base = live_server.url
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(owner.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In", exact=True).click()
    page.wait_for_load_state()
    registered = page.request.post(
        f"{base}/oauth/register/",
        data={
            "client_name": "Consent form client",
            "redirect_uris": ["http://127.0.0.1:9/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        },
    )
    assert registered.status == 201, registered.text()
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    query = urlencode(
        {
            "response_type": "code",
            "client_id": registered.json()["client_id"],
            "redirect_uri": "http://127.0.0.1:9/callback",
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "scope": "mcp",
        }
    )
    page.goto(f"{base}/oauth/authorize/?{query}")
    worker = page.get_by_label("Act as worker")
    new_name = page.get_by_label("New worker name")
    worker.select_option(label="triage-bot")
    assert not new_name.is_visible()
    assert not page.get_by_label("Role of the new worker").is_visible()
    worker.select_option(label="A new worker…")
    assert new_name.is_visible()
    assert page.get_by_label("Role of the new worker").is_visible()
