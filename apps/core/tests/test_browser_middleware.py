"""The agent API skips the browser-only middleware; every other page keeps it."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import RequestFactory
from pytest_django.fixtures import Settings

from apps.core.browser_middleware import (
    AuthenticationMiddleware,
    HtmxMiddleware,
    MessageMiddleware,
    SessionMiddleware,
)


def _chain() -> Any:
    seen: dict[str, bool] = {}

    def view(request: Any) -> Any:
        from django.http import HttpResponse

        seen.update(
            session=hasattr(request, "session"),
            user=hasattr(request, "user"),
            messages=hasattr(request, "_messages"),
            htmx=hasattr(request, "htmx"),
        )
        return HttpResponse("ok")

    handler: Any = HtmxMiddleware(view)
    handler = MessageMiddleware(handler)
    handler = AuthenticationMiddleware(handler)
    handler = SessionMiddleware(handler)
    return handler, seen


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/actions/sandbox.list_projects/execute",
        "/api/v1/actions",
        "/api/v1/proxy/sandbox/projects",
        "/api/v1/whoami",
        "/api/v1/approvals/apr_x",
        "/mcp",
    ],
)
def test_agent_paths_skip_sessions_users_messages_and_htmx(path: str) -> None:
    handler, seen = _chain()
    assert handler(RequestFactory().post(path)).status_code == 200
    assert seen == {"session": False, "user": False, "messages": False, "htmx": False}


@pytest.mark.parametrize("path", ["/", "/o/acme/workers/", "/api/v1/orgs/acme/workers/"])
def test_every_other_path_keeps_them(path: str) -> None:
    handler, seen = _chain()
    assert handler(RequestFactory().get(path)).status_code == 200
    assert seen == {"session": True, "user": True, "messages": True, "htmx": True}


def test_the_project_uses_them_and_the_checks_accept_them(settings: Settings) -> None:
    from django.core.management import call_command

    assert "apps.core.browser_middleware.SessionMiddleware" in settings.MIDDLEWARE
    call_command("check")
