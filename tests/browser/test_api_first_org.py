"""A new organization, from nothing to a first brokered call, through the
management API and one browser consent (headless Chromium, live server).

The browser does only what must be a person: sign up and verify the email,
mint a personal API token (shown once), and approve the Sandbox's consent
page. Everything else is plain HTTP against /api/v1/ with that token: the
organization's settings, the Sandbox OAuth app, the OAuth connect (the API
returns the URL the browser opens), a role checked with a dry run, a worker and
its token, the agent's brokered call, and the audit trail of it all. The
Sandbox's own developer console is the third party's, so registering Grantry
there is done with its service, as a person would in the SaaS's settings."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from django.test import override_settings
from pytest_django.live_server_helper import LiveServer

from apps.sandbox.services import sandbox_client_register
from tests.browser.test_signup_invite_flow import confirm_email, sign_up

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, f"{response.request.url}: {response.text[:2000]}"
    return response.json()


def test_new_org_to_first_brokered_call_with_the_api_and_one_consent(
    browser: Any, live_server: LiveServer
) -> None:
    base = live_server.url
    with override_settings(GRANTRY_BASE_URL=base, GRANTRY_SANDBOX_URL=""):
        run(browser, base)


def run(browser: Any, base: str) -> None:
    # 1. A person signs up, verifies the email and lands in the new organization.
    page = browser.new_context().new_page()
    sign_up(page, base, "ada@analytical.test", "Analytical Engines")
    confirm_email(page, base, "ada@analytical.test")
    match = re.search(r"/o/([\w-]+)/$", page.url)
    assert match, page.url
    slug = match.group(1)

    # 2. She mints a personal API token in the browser (shown once).
    page.goto(f"{base}/accounts/tokens/")
    page.get_by_label("Name").fill("setup script")
    page.get_by_role("button", name="Create token").click()
    page.wait_for_load_state()
    raw = page.locator("#personal-token-value").inner_text().strip()
    assert raw.startswith("gryp_"), raw

    # From here on: the API only.
    api = httpx.Client(
        base_url=f"{base}/api/v1/orgs/{slug}",
        headers={"Authorization": f"Bearer {raw}"},
        timeout=30,
    )
    me = ok(api.get("/members/"))["results"]
    assert [(m["email"], m["role"]) for m in me] == [("ada@analytical.test", "owner")]
    settings = ok(api.patch("/settings/", json={"max_token_days": 30}))
    assert settings["max_token_days"] == 30

    # 3. The Sandbox OAuth app: registered at the SaaS, then stored in Grantry.
    client_id, client_secret = sandbox_client_register(
        name="Grantry (Analytical Engines)", redirect_uris=[f"{base}/oauth/callback/"]
    )
    app = ok(
        api.put(
            "/provider-apps/sandbox/",
            json={"client_id": client_id, "client_secret": client_secret},
        )
    )
    assert app["has_client_secret"] is True
    assert client_secret not in str(app)

    # 4. Start the OAuth connect with the API; the one consent happens in the browser.
    start = ok(
        api.post("/connections/oauth/start/", json={"provider": "sandbox", "name": "sandbox"}),
        201,
    )
    page.goto(start["authorization_url"])
    assert "wants to access your Sandbox account" in page.content()
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_load_state()
    assert page.url.endswith(f"/o/{slug}/connections/"), page.url
    connections = ok(api.get("/connections/"))["results"]
    assert [(c["name"], c["status"]) for c in connections] == [("sandbox", "active")]
    connection_id = connections[0]["id"]

    # 5. A role, checked with a dry run before any agent uses it.
    role = ok(
        api.post(
            "/roles/",
            json={
                "name": "sandbox-reader",
                "rules": [
                    {
                        "provider_key": "sandbox",
                        "action_pattern": "sandbox.*",
                        "action_class": "read",
                        "connection": connection_id,
                    }
                ],
            },
        ),
        201,
    )
    call = {"action": "sandbox.list_projects", "connection": connection_id}
    read = ok(api.post(f"/roles/{role['id']}/test/", json=call))
    assert read["allowed"] is True, read
    write = ok(
        api.post(
            f"/roles/{role['id']}/test/",
            json={"action": "sandbox.create_project", "connection": connection_id},
        )
    )
    assert write["allowed"] is False

    # 6. A worker and its token (shown once, in the mint response).
    worker = ok(api.post("/workers/", json={"name": "engine", "default_role": role["id"]}), 201)
    minted = ok(api.post(f"/workers/{worker['id']}/tokens/", json={"expires_in_days": 7}), 201)
    worker_token = minted["token"]
    assert worker_token.startswith("gry_")

    # 7. The agent's first brokered call, with the worker token.
    agent = httpx.Client(
        base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {worker_token}"}, timeout=30
    )
    call = ok(agent.post("/actions/sandbox.list_projects/execute", json={"input": {}}))
    assert call["status"] == 200
    assert "projects" in call["body"]
    refused = agent.post("/actions/sandbox.create_project/execute", json={"input": {"name": "x"}})
    assert refused.status_code == 403

    # 8. The audit trail, through the API: the call, the refusal, and the setup.
    events = wait_for_events(api, action="broker.execute", count=2)
    decisions = {e["decision"] for e in events}
    assert decisions == {"allowed", "denied"}
    assert all(e["worker_id"] == worker["id"] for e in events)
    setup = {
        e["action"] for e in ok(api.get("/audit/events/", params={"page_size": 200}))["results"]
    }
    assert {
        "org.created",
        "personal_token.minted",
        "org.updated",
        "provider_app.created",
        "connection.created",
        "role.created",
        "worker.created",
        "token.minted",
    } <= setup, setup
    everything = str(ok(api.get("/audit/events/", params={"page_size": 200})))
    for secret in (raw, worker_token, client_secret):
        assert secret not in everything


def wait_for_events(api: httpx.Client, *, action: str, count: int) -> list[dict]:
    """The broker records the outcome right after answering; wait until it is there."""
    deadline = time.monotonic() + 20
    while True:
        events = ok(api.get("/audit/events/", params={"action": action}))["results"]
        events = [e for e in events if e["outcome"] != "" and e["decision"]]
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.2)
