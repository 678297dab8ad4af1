"""Shared browser fixtures: open headless Chromium already logged in as a user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db import connections
from pytest_django.live_server_helper import LiveServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _session_cookie(user: Any) -> str:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    assert session.session_key is not None
    return session.session_key


@pytest.fixture
def open_as(live_server: LiveServer) -> Iterator[Any]:
    """`open_as(user, width=1280)` → a Playwright page logged in as `user`. Call it
    after the test's own database setup (Playwright's loop changes the thread's
    connection context)."""
    from playwright.sync_api import sync_playwright

    state: dict = {}

    def open_page(user: Any, width: int = 1280) -> Any:
        cookie = _session_cookie(user)
        if "browser" not in state:
            state["pw"] = sync_playwright().start()
            state["browser"] = state["pw"].chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
        context = state["browser"].new_context(viewport={"width": width, "height": 900})
        context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}]
        )
        return context.new_page()

    yield open_page
    if "browser" in state:
        state["browser"].close()
        # ORM queries the test made while Playwright's loop ran opened a connection
        # in that loop's context: close it there, before the loop stops.
        connections.close_all()
        state["pw"].stop()
    connections.close_all()
