"""The README's "five-minute tour of the demo", walked literally in Chromium
against a live server seeded like `make run`: the same steps in the same order,
the same curl commands (base URL swapped for the live server's) and the same
expected answers (issue 13, #1)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "grantry-demo-password"
README_BASE = "http://127.0.0.1:8000"


def tour_commands() -> list[str]:
    """The curl lines of the tour's step 3, exactly as the README prints them."""
    readme = (Path(django_settings.BASE_DIR) / "README.md").read_text()
    tour = readme.split("### A five-minute tour of the demo", 1)[1].split("\n## ", 1)[0]
    block = tour.split("```sh", 1)[1].split("```", 1)[0]
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


def run_curl(command: str, base: str, token: str) -> tuple[int, dict]:
    """Run a README curl line with the live server's address and `-w` for the status."""
    line = command.replace(README_BASE, base).replace("$GRANTRY_TOKEN", token)
    args = re.findall(r"'[^']*'|\"[^\"]*\"|\S+", line)
    args = [a[1:-1] if a[:1] in "'\"" else a for a in args]
    assert args[0] == "curl", line
    out = subprocess.run(
        [*args, "-w", "\n%{http_code}"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    body, _, status = out.rpartition("\n")
    return int(status), json.loads(body or "{}")


def log_in(page: Any, base: str, email: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In", exact=True).click()
    page.wait_for_load_state()


def test_the_readme_tour_as_written(
    browser: Any, live_server: LiveServer, settings: Settings
) -> None:
    base = live_server.url
    settings.GRANTRY_BASE_URL = base
    settings.GRANTRY_SANDBOX_URL = f"{base}/sandbox"
    call_command("seed_demo")
    commands = tour_commands()
    assert len(commands) == 3, commands  # whoami, a read, a write the role refuses

    owner = browser.new_context().new_page()
    # 1. Connections shows sandbox-demo; Connect an account → Sandbox runs OAuth again.
    log_in(owner, base, "demo@grantry.local")
    owner.get_by_role("navigation", name="Organization").get_by_role(
        "link", name="Connections"
    ).click()
    assert owner.locator("td strong", has_text="sandbox-demo").is_visible()
    owner.get_by_role("link", name="Connect an account").click()
    owner.get_by_role("link", name="Connect Sandbox").click()
    owner.get_by_label("Connection name").fill("sandbox-tour")
    owner.get_by_role("button", name="Continue to Sandbox").click()
    owner.wait_for_load_state()
    if "/sandbox/o/authorize/" in owner.url:
        owner.get_by_role("button", name="Authorize").click()
        owner.wait_for_load_state()
    assert owner.url.endswith("/o/demo/connections/"), owner.url
    assert owner.locator("td strong", has_text="sandbox-tour").is_visible()

    # 2. Workers → demo-agent → Mint token: shown once.
    owner.get_by_role("navigation", name="Organization").get_by_role("link", name="Workers").click()
    owner.get_by_role("link", name="demo-agent").click()
    owner.get_by_label("Name").fill("README tour")
    owner.get_by_label("7 days").check()
    owner.get_by_role("button", name="Mint token").click()
    owner.wait_for_load_state()
    token = owner.locator("#token-value").inner_text().strip()
    assert token.startswith("gry_")

    # 3. The README's curl lines: whoami 200, a read 200, a refused write 403.
    status, body = run_curl(commands[0], base, token)
    assert status == 200, body
    assert body["worker"]["name"] == "demo-agent", body
    status, body = run_curl(commands[1], base, token)
    assert status == 200, body
    status, body = run_curl(commands[2], base, token)
    assert status == 403, body
    assert body["error"]["code"] == "denied", body

    # 4. Roles → the demo role: rules in plain words, YAML/JSON view, Test a call.
    owner.get_by_role("navigation", name="Organization").get_by_role("link", name="Roles").click()
    owner.get_by_role("link", name="sandbox-read-and-create-tasks").click()
    main = owner.locator("main").inner_text()
    assert "on connection 'sandbox-demo'" in main
    assert "Test a call" in main
    assert owner.get_by_role("link", name="View as YAML / JSON").is_visible()

    # 5. The reviewer filters on the worker and decision=denied, opens an event, exports.
    reviewer = browser.new_context(accept_downloads=True).new_page()
    log_in(reviewer, base, "reviewer@grantry.local")
    reviewer.get_by_role("navigation", name="Organization").get_by_role(
        "link", name="Audit"
    ).click()
    reviewer.locator("details.audit-filters-wrap summary").click()  # the folded form
    reviewer.get_by_label("Worker", exact=True).select_option(label="demo-agent")
    reviewer.get_by_label("Decision").select_option("denied")
    reviewer.get_by_role("button", name="Apply filters").click()
    reviewer.wait_for_load_state()
    reviewer.locator("main table.audit-table tbody tr a").first.click()
    reviewer.wait_for_load_state()
    assert "denied" in reviewer.locator("main").inner_text().lower()
    reviewer.go_back()
    with reviewer.expect_download() as download:
        reviewer.get_by_role("button", name="CSV").click()
    assert "sandbox.delete_task" in Path(download.value.path()).read_text()

    # 6. Back as the owner, revoke the token: the next call answers 401.
    owner.goto(f"{base}/o/demo/workers/")
    owner.get_by_role("link", name="demo-agent").click()
    owner.get_by_role("button", name=re.compile(r"^Revoke… ")).first.click()
    owner.get_by_role("button", name="Revoke token").click()
    owner.wait_for_load_state()
    status, _ = run_curl(commands[0], base, token)
    assert status == 401
