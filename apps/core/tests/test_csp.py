"""The Content-Security-Policy header (the browser side is tests/browser/test_csp.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def policy(response: Any) -> set[str]:
    header = response["Content-Security-Policy"]
    return {" ".join(part.split()) for part in header.split(";") if part.strip()}


def test_pages_get_the_strict_policy(client: Client) -> None:
    for path in ("/accounts/login/", "/", "/healthz?checks=0"):
        directives = policy(client.get(path))
        assert {
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
        } <= directives, path
        assert not any("unsafe" in d for d in directives), path


def test_swagger_ui_gets_its_own_policy_and_no_inline_script(client: Client) -> None:
    page = client.get("/api/docs/")
    assert page.status_code == 200
    directives = policy(page)
    assert "script-src 'self'" in directives
    assert "style-src 'self' 'unsafe-inline'" in directives
    html = page.content.decode()
    assert "<script>" not in html  # the initializer is a file of its own
    initializer = client.get("/api/docs/?script=")
    assert initializer.status_code == 200
    assert "SwaggerUIBundle" in initializer.content.decode()


@pytest.mark.parametrize("path", ["/api/v1/whoami", "/api/v1/actions", "/mcp"])
def test_agent_answers_get_a_policy_that_allows_nothing(client: Client, path: str) -> None:
    """The agent API skips the per-page policy (apps/core/browser_middleware.py) but its
    answers still carry a policy, the other security headers and the request id."""
    response = client.post(path, "{}", content_type="application/json")
    assert response.status_code == 401
    assert policy(response) == {"default-src 'none'", "frame-ancestors 'none'"}
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert len(response["X-Request-Id"]) == 32
    assert not response.cookies  # no CSRF or session cookie
