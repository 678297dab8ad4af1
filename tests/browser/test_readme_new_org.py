"""The README's "Your own organization, from sign-up", walked literally in Chromium for
a NEW organization (not the seeded demo): sign up, verify, connect the Sandbox in one
click, a role with two rules, a worker and its named token, then the section's curl
lines as printed (base URL swapped for the live server's, PROJECT_ID taken from the
list it prints) (issue 27, #2 and #10)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from apps.audit.models import AuditEvent
from apps.sandbox.models import Task
from tests.browser.test_readme_tour import run_curl
from tests.browser.test_signup_invite_flow import confirm_email, sign_up

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SECTION = "### Your own organization, from sign-up"


def section_commands() -> list[str]:
    readme = (Path(django_settings.BASE_DIR) / "README.md").read_text()
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    commands, current = [], ""
    for line in block.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "export ")):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            commands.append(current.strip())
            current = ""
    return commands


def test_the_readme_new_organization_section_as_written(
    browser: Any, live_server: LiveServer, settings: Settings
) -> None:
    base = live_server.url
    settings.GRANTRY_BASE_URL = base
    settings.GRANTRY_SANDBOX_URL = f"{base}/sandbox"
    commands = section_commands()
    assert len(commands) == 2, commands
    page = browser.new_context().new_page()
    nav = page.get_by_role("navigation", name="Organization")

    # 1. Sign up, verify, land in the new organization.
    sign_up(page, base, "ada@newco.test", "Newco")
    confirm_email(page, base, "ada@newco.test")
    assert page.url.endswith("/o/newco/"), page.url

    # 2. Connect the Sandbox: one click registers the org's OAuth app, then consent.
    nav.get_by_role("link", name="Connections").click()
    page.get_by_role("link", name="Connect an account").click()
    page.get_by_role("link", name="Connect Sandbox").click()
    page.get_by_label("Connection name").fill("sandbox")
    page.get_by_role("button", name="Continue to Sandbox").click()
    page.wait_for_load_state()
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_load_state()
    assert page.url.endswith("/o/newco/connections/"), page.url

    # 3. A role with two rules.
    nav.get_by_role("link", name="Roles").click()
    page.get_by_role("link", name="New role").click()
    page.get_by_label("Name").fill("sandbox-tasks")
    page.get_by_role("button", name="Create role").click()
    page.wait_for_load_state()
    for action in ("sandbox.list_projects", "sandbox.create_task"):
        page.get_by_role("link", name="Add a rule").click()
        page.get_by_label("Actions of a provider").select_option("sandbox")
        page.get_by_role("button", name="Next: choose actions").click()
        page.wait_for_load_state()
        page.get_by_label(re.compile(r"^Actions:?$")).select_option(f"exact:{action}")
        page.get_by_role("button", name="Add rule").click()
        page.wait_for_load_state()
    main = page.locator("main").inner_text()
    assert "sandbox.list_projects" in main
    assert "sandbox.create_task" in main

    # 4. A worker with that role, and a named token.
    nav.get_by_role("link", name="Workers").click()
    page.get_by_role("link", name="New worker").click()
    page.get_by_label("Name").fill("my-agent")
    page.get_by_label("Default role").select_option(label="sandbox-tasks")
    page.get_by_role("button", name="Create worker").click()
    page.wait_for_load_state()
    page.get_by_label("Name").fill("README new org")
    page.get_by_role("button", name="Mint token").click()
    page.wait_for_load_state()
    token = page.locator("#token-value").inner_text().strip()
    assert token.startswith("gry_")

    # 5. The section's curl lines: the list, then a task in a project from it.
    status, body = run_curl(commands[0], base, token)
    assert status == 200, body
    assert body["status"] == 200, body
    projects = body["body"]["projects"]
    assert len(projects) == 2, projects  # the new account's demo projects
    project_id = projects[0]["id"]
    status, body = run_curl(commands[1].replace("PROJECT_ID", str(project_id)), base, token)
    assert status == 200, body
    assert body["status"] == 201, body
    assert Task.objects.filter(project_id=project_id, title="Write the report").count() == 1
    calls = AuditEvent.objects.filter(action="broker.execute", decision="allowed")
    assert calls.count() == 2
