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
