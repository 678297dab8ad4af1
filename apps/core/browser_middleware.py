"""Browser-only middleware, skipped on the agent API.

The agent endpoints (execute, check, proxy, the action list, whoami, the approval
status and /mcp) authenticate with a worker token in a header: sessions, Django's
user, flash messages and htmx details are never used there, yet each costs every
agent call some CPU. These subclasses of Django's and django-htmx's middleware
behave exactly like their parents except on agent paths, where they pass the
request straight through. (They are subclasses, so Django's and the admin's
system checks still find the middleware they require.)"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest
from django_htmx import middleware as htmx

AGENT_PATH_PREFIXES = (
    "/api/v1/actions",
    "/api/v1/proxy/",
    "/api/v1/whoami",
    "/api/v1/approvals/",
    "/mcp",
)


def is_agent_path(path: str) -> bool:
    return path.startswith(AGENT_PATH_PREFIXES)


class _SkippedOnAgentPaths:
    get_response: Any

    def __call__(self, request: HttpRequest) -> Any:
        if is_agent_path(request.path_info):
            return self.get_response(request)
        return super().__call__(request)  # type: ignore[misc]


class SessionMiddleware(_SkippedOnAgentPaths, sessions.SessionMiddleware):
    pass


class AuthenticationMiddleware(_SkippedOnAgentPaths, auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(_SkippedOnAgentPaths, messages.MessageMiddleware):
    pass


class HtmxMiddleware(_SkippedOnAgentPaths, htmx.HtmxMiddleware):
    pass
