"""Content-Security-Policy in headless Chromium: every page carries the strict policy,
and walking the dashboard of the demo org as its owner logs no CSP violation."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from tests.factories import MembershipFactory, OrganizationFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STRICT = {
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "object-src 'none'",
    "frame-ancestors 'none'",
}
# Links not to follow while walking: they act (log out) or leave the dashboard.
SKIP = ("/accounts/logout/", "/admin/", "/export", "/api/", "/mcp")
MAX_PAGES = 60


def directives(header: str) -> set[str]:
    return {" ".join(part.split()) for part in header.split(";") if part.strip()}


class Watcher:
    """Every CSP violation a page reports, from the console and from the DOM event."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.violations: list[str] = []
        page.on("console", self._console)
        page.add_init_script(
            "window.__csp = [];"
            "document.addEventListener('securitypolicyviolation', e => window.__csp.push("
            "e.violatedDirective + ' ' + (e.blockedURI || 'inline') + ' at ' + e.documentURI));"
        )

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text:
            self.violations.append(f"{self.page.url}: {message.text}")

    def visit(self, url: str) -> dict[str, str]:
        response = self.page.goto(url)
        assert response is not None, url
        assert response.status < 400, (url, response.status)
        self.page.wait_for_load_state("networkidle")
        self.violations += self.page.evaluate("window.__csp")
        return response.headers


def test_strict_csp_on_every_dashboard_page_and_no_violation(
    browser: Any, live_server: LiveServer, settings: Settings
) -> None:
    settings.GRANTRY_SANDBOX_URL = f"{live_server.url}/sandbox"
    settings.GRANTRY_BASE_URL = live_server.url
    call_command("seed_demo")
    # A second organization, so the header's organization switcher is on every page.
    owner = get_user_model().objects.get(username="demo@grantry.local")
    MembershipFactory(
        organization=OrganizationFactory(name="Second", slug="second"), user=owner, role="owner"
    )
    base = live_server.url
    page = browser.new_context().new_page()
    watcher = Watcher(page)

    headers = watcher.visit(f"{base}/accounts/login/")
    assert directives(headers["content-security-policy"]) >= STRICT
    page.get_by_label("Email").fill("demo@grantry.local")
    page.get_by_label("Password").fill("grantry-demo-password")
    page.get_by_role("button", name="Sign In", exact=True).click()
    page.wait_for_load_state("networkidle")

    # Walk every page reachable from the organization's overview (and the account pages).
    queue = [f"{base}/o/demo/", f"{base}/accounts/tokens/", f"{base}/sandbox/"]
    seen: set[str] = set()
    while queue and len(seen) < MAX_PAGES:
        url = queue.pop(0)
        if url in seen:
            continue
        seen.add(url)
        headers = watcher.visit(url)
        assert directives(headers["content-security-policy"]) >= STRICT, url
        # getAttribute: an SVG link's `href` is an object, not a string (the chart bars).
        links = "els => els.map(e => new URL(e.getAttribute('href'), document.baseURI).href)"
        for href in page.eval_on_selector_all("a[href]", links):
            parts = urlsplit(href)
            if f"{parts.scheme}://{parts.netloc}" != base or parts.query or parts.fragment:
                continue
            if any(skip in parts.path for skip in SKIP):
                continue
            if parts.path.startswith(("/o/demo/", "/accounts/", "/sandbox/")):
                queue.append(f"{base}{parts.path}")
    # The main sections were all reached.
    for section in ("workers/", "connections/", "roles/", "audit/", "audit/charts/", "members/"):
        assert f"{base}/o/demo/{section}" in seen, sorted(seen)
    assert any("/audit/events/" in url for url in seen)
    assert any(url.rstrip("/").split("/")[-1].isdigit() for url in seen if "/workers/" in url)

    # htmx requests work under the policy too: the role dry-run swaps in its result.
    role_page = next(url for url in sorted(seen) if "/roles/" in url and url[-2].isdigit())
    watcher.visit(role_page)
    form = page.locator("form[hx-post]")
    if form.count():
        form.first.locator("button[type=submit]").click()
        page.wait_for_load_state("networkidle")

    # The organization switcher submits itself on change (grantry.js, no inline handler).
    watcher.visit(f"{base}/o/demo/")
    with page.expect_navigation():
        page.select_option("#org-switch-select", "second")
    assert urlsplit(page.url).path == "/o/second/"

    assert watcher.violations == [], watcher.violations


def test_api_docs_have_their_own_narrower_policy(browser: Any, live_server: LiveServer) -> None:
    page = browser.new_context().new_page()
    watcher = Watcher(page)
    for path, marker in (("/api/docs/", ".swagger-ui"), ("/api/redoc/", "redoc")):
        headers = watcher.visit(f"{live_server.url}{path}")
        policy = directives(headers["content-security-policy"])
        assert "script-src 'self'" in policy  # still no inline or third-party script
        assert "frame-ancestors 'none'" in policy
        assert "style-src 'self' 'unsafe-inline'" in policy
        page.wait_for_selector(marker)
    assert watcher.violations == [], watcher.violations
