"""Content-Security-Policy in headless Chromium: every page carries the strict policy,
and walking every page a user can reach logs no CSP violation: the demo org's dashboard
(MCP pages included), the account pages, MFA set-up (the TOTP QR code is drawn, not a
broken image), passkeys, recovery codes, the MCP OAuth consent, and the 403, 404 and
500 pages."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.contrib.auth import get_user_model
from django.core.management import call_command
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from apps.connections.tests.mcp_servers import EVERYTHING_PACKAGE
from tests.factories import MembershipFactory, OrganizationFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STRICT = {
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "object-src 'none'",
    "frame-ancestors 'none'",
}
# Links not to follow while walking: they act (log out) or leave the dashboard. The
# agent endpoint /mcp is matched as a prefix: /o/<org>/settings/mcp/ and the MCP
# connection pages are dashboard pages and are walked.
SKIP = ("/accounts/logout/", "/admin/", "/export", "/api/")
SKIP_PREFIX = ("/mcp",)
MAX_PAGES = 120


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

    def visit(self, url: str, *, status: int | None = None) -> dict[str, str]:
        response = self.page.goto(url)
        assert response is not None, url
        if status is None:
            assert response.status < 400, (url, response.status)
        else:
            assert response.status == status, (url, response.status)
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
            if any(skip in parts.path for skip in SKIP) or parts.path.startswith(SKIP_PREFIX):
                continue
            if parts.path.startswith(("/o/demo/", "/accounts/", "/sandbox/")):
                queue.append(f"{base}{parts.path}")
    # The main sections were all reached.
    for section in (
        "workers/",
        "connections/",
        "connections/mcp/add/",
        "connections/mcp/import/",
        "settings/mcp/",
        "roles/",
        "audit/",
        "audit/charts/",
        "members/",
    ):
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


def csrf_headers(context: Any) -> dict[str, str]:
    token = next(c["value"] for c in context.cookies() if c["name"] == "csrftoken")
    return {"X-CSRFToken": token}


def test_no_violation_on_account_mfa_consent_mcp_and_error_pages(
    browser: Any, live_server: LiveServer, settings: Settings
) -> None:
    settings.GRANTRY_SANDBOX_URL = f"{live_server.url}/sandbox"
    settings.GRANTRY_BASE_URL = live_server.url
    settings.ROOT_URLCONF = "tests.browser.boom_urls"
    call_command("seed_demo")
    base = live_server.url
    context = browser.new_context()
    page = context.new_page()
    watcher = Watcher(page)
    watcher.visit(f"{base}/accounts/login/")
    page.get_by_label("Email").fill("demo@grantry.local")
    page.get_by_label("Password").fill("grantry-demo-password")
    page.get_by_role("button", name="Sign In", exact=True).click()
    page.wait_for_load_state("networkidle")

    # An MCP server (stdio, in the sandbox), so its detail and tool pages exist.
    added = page.request.post(
        f"{base}/o/demo/connections/mcp/add/",
        form={
            "name": "everything",
            "transport": "stdio",
            "package": f"npx -y {EVERYTHING_PACKAGE} stdio",
            "header_name": "Authorization",
            "auth": "none",
        },
        headers=csrf_headers(context),
        max_redirects=0,
    )
    assert added.status == 302, added.text()[:2000]
    detail = added.headers["location"]
    watcher.visit(f"{base}{detail}")
    tool_links = page.eval_on_selector_all(
        "a[href*='/mcp/tools/']", "els => els.map(e => e.getAttribute('href'))"
    )
    assert tool_links, page.content()[:3000]
    watcher.visit(f"{base}{tool_links[0]}")

    def reauthenticate_if_asked() -> None:
        # allauth asks for the password again before MFA changes: that page is walked too.
        if "reauthenticate" in page.url:
            page.get_by_label("Password").fill("grantry-demo-password")
            page.get_by_role("button", name=re.compile("Confirm", re.I)).click()
            page.wait_for_load_state("networkidle")

    # Account and MFA set-up pages.
    for path in (
        "/accounts/email/",
        "/accounts/password/change/",
        "/accounts/tokens/",
        "/accounts/2fa/",
        "/accounts/2fa/webauthn/",
        "/accounts/2fa/webauthn/add/",
    ):
        watcher.visit(f"{base}{path}")
        reauthenticate_if_asked()
    # The TOTP QR code is drawn (an inline SVG), not a blocked data: image.
    watcher.visit(f"{base}/accounts/2fa/totp/activate/")
    reauthenticate_if_asked()
    assert urlsplit(page.url).path == "/accounts/2fa/totp/activate/", page.url
    qr = page.get_by_test_id("totp-qr")
    box = qr.bounding_box()
    assert box is not None
    assert box["width"] > 100, box
    assert box["height"] > 100, box
    assert qr.locator("svg path").count() == 1
    assert page.locator("img[src^='data:']").count() == 0
    secret = page.locator("#authenticator_secret").input_value()
    code = format_hotp_value(hotp_value(secret, int(time.time()) // 30))
    page.get_by_label(re.compile("Authenticator code", re.I)).fill(code)
    page.get_by_role("button", name="Activate").click()
    page.wait_for_load_state("networkidle")
    for path in (
        "/accounts/2fa/",
        "/accounts/2fa/recovery-codes/",
        "/accounts/2fa/recovery-codes/generate/",
        "/accounts/2fa/totp/deactivate/",
    ):
        watcher.visit(f"{base}{path}")

    # The MCP OAuth consent page (a client registered as an MCP client would).
    registered = page.request.post(
        f"{base}/oauth/register/",
        data={
            "client_name": "CSP walk client",
            "redirect_uris": ["http://127.0.0.1:9/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        },
    )
    assert registered.status == 201, registered.text()
    client_id = registered.json()["client_id"]
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": "http://127.0.0.1:9/callback",
            "state": "csp",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "scope": "mcp",
        }
    )
    watcher.visit(f"{base}/oauth/authorize/?{query}")
    assert page.get_by_role("button", name=re.compile("Allow|Connect|Authorize", re.I)).count()

    # Error pages: 404 (no route, and another org's URL), 500, and 403 for a reviewer.
    watcher.visit(f"{base}/o/demo/no-such-page/", status=404)
    assert "This page does not exist" in page.content()
    watcher.visit(f"{base}/o/not-a-member/", status=404)
    watcher.visit(f"{base}/boom/", status=500)
    assert "Something went wrong" in page.content()
    reviewer = browser.new_context().new_page()
    reviewer_watcher = Watcher(reviewer)
    reviewer_watcher.visit(f"{base}/accounts/login/")
    reviewer.get_by_label("Email").fill("reviewer@grantry.local")
    reviewer.get_by_label("Password").fill("grantry-demo-password")
    reviewer.get_by_role("button", name="Sign In", exact=True).click()
    reviewer.wait_for_load_state("networkidle")
    reviewer_watcher.visit(f"{base}/o/demo/connections/mcp/add/", status=403)
    assert "You can't open this page" in reviewer.content()

    assert watcher.violations == [], watcher.violations
    assert reviewer_watcher.violations == [], reviewer_watcher.violations
