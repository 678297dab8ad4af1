"""Where the browser tests' Chromium is and how a test signs a user in to it.

The root conftest's `chromium_session`/`browser`/`open_as` fixtures use these; a test
that must drive Chromium from another thread (the MCP OAuth client's redirect handler,
apps/mcpauth/tests/test_mcp_client.py) launches its own with the same settings."""

from __future__ import annotations

from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking"]


def session_cookie(user: Any) -> str:
    """A saved Django session for `user`: the value of the session cookie."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    assert session.session_key is not None
    return session.session_key
