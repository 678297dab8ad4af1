"""Browser-only middleware, skipped on the agent API.

The agent endpoints (execute, check, proxy, the action list, whoami, the approval
status and /mcp) authenticate with a worker token in a header: sessions, Django's
user, flash messages, htmx details, APPEND_SLASH redirects and static files are
never used there, yet each costs every
agent call some CPU. These subclasses of Django's, django-htmx's, django-csp's and
WhiteNoise's middleware behave exactly like their parents except on agent paths,
where they pass the request straight through. (They are subclasses, so Django's and
the admin's system checks still find the middleware they require. CSRF stays Django's
own class, which `check --deploy` looks for by name; every agent view is csrf_exempt.)

What an agent response still gets: the request id (RequestIdMiddleware), the 503
mapping, the leaked-token check, SecurityMiddleware's headers (HSTS, nosniff,
Referrer-Policy, the HTTPS redirect), X-Frame-Options, and a fixed
Content-Security-Policy that allows nothing (`AGENT_POLICY`: an agent reads JSON or a
proxied body, never a page, so no policy has to be built per response)."""

from __future__ import annotations

from typing import Any, cast

from csp import middleware as csp
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponseBase
from django.middleware import common
from django_htmx import middleware as htmx
from whitenoise import middleware as whitenoise

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


class CommonMiddleware(_SkippedOnAgentPaths, common.CommonMiddleware):
    pass


class WhiteNoiseMiddleware(_SkippedOnAgentPaths, whitenoise.WhiteNoiseMiddleware):
    pass


AGENT_POLICY = "default-src 'none'; frame-ancestors 'none'"


class CSPMiddleware(csp.CSPMiddleware):
    """The configured policy on pages; on agent paths the fixed `AGENT_POLICY`."""

    def __call__(self, request: HttpRequest) -> Any:
        if is_agent_path(request.path_info):
            response = cast(HttpResponseBase, self.get_response(request))  # a sync stack
            if "Content-Security-Policy" not in response:
                response["Content-Security-Policy"] = AGENT_POLICY
            return response
        return super().__call__(request)
