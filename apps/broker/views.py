"""The agent API: list, execute, check and proxy, authenticated by a worker token.

Views stay thin: authenticate (DRF, `WorkerTokenAuthentication`), cap the
body, parse it, call one broker service, render its `BrokerResult`. The hot
path deliberately skips DRF's parser negotiation and serializers (the body
is one small JSON object) and renders with Django's `JsonResponse`.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.db import connection as db_connection
from django.http import HttpResponse, JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.broker import schema
from apps.broker.catalog import actions_for
from apps.broker.results import BrokerResult, has_nul
from apps.broker.services import RequestMeta, execute_action, proxy_call, token_with_connections
from apps.core.api import error_response
from apps.workers.auth import WorkerTokenAuthentication, token_by_digest

MAX_REQUEST_BYTES = getattr(settings, "GRANTRY_BROKER_MAX_REQUEST_BYTES", 1_000_000)


class IsAgent(BasePermission):
    """The request carries a valid worker token (request.auth is an AgentContext)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return request.auth is not None and hasattr(request.auth, "worker")


def request_meta(request: Any, surface: str = "api") -> RequestMeta:
    return RequestMeta(
        request_id=getattr(request, "request_id", ""),
        ip=request.META.get("REMOTE_ADDR") or None,
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
        surface=surface,
    )


def too_large(request: Any) -> HttpResponse | None:
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > MAX_REQUEST_BYTES:
        return error_response(
            "request_too_large",
            f"The request body is larger than {MAX_REQUEST_BYTES} bytes.",
            status_code=413,
        )
    return None


def render_error(result: BrokerResult) -> HttpResponse:
    error = result.error
    assert error is not None
    return error_response(
        error.code,
        error.message,
        status_code=error.status,
        details=error.details,
        headers=error.headers,
    )


class AgentView(APIView):
    authentication_classes = [WorkerTokenAuthentication]
    permission_classes = [IsAgent]


def _body(request: Request) -> tuple[dict[str, Any] | None, HttpResponse | None]:
    """The JSON object in the body, or the error answer for a body that is not one.
    Kept on the request: authentication reads it too (to fetch the named connection
    in the token's statement), and the body is parsed once."""
    django_request: Any = request._request
    cached = getattr(django_request, "_agent_body", None)
    if cached is None:
        cached = django_request._agent_body = _parse_body(django_request)
    found: tuple[dict[str, Any] | None, HttpResponse | None] = cached
    return found


def _parse_body(request: Any) -> tuple[dict[str, Any] | None, HttpResponse | None]:
    problem = too_large(request)
    if problem is not None:
        return None, problem
    raw = request.body
    if len(raw) > MAX_REQUEST_BYTES:
        return None, error_response(
            "request_too_large", "The request body is too large.", status_code=413
        )
    try:
        payload = json.loads(raw or b"{}")
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return None, error_response(
            "invalid_json", "The request body is not valid JSON.", status_code=400
        )
    if not isinstance(payload, dict):
        return None, error_response(
            "invalid_input", "The request body must be a JSON object.", status_code=400
        )
    if b"\\u0000" in raw and has_nul(payload):
        return None, error_response(
            "invalid_input",
            "Text in the request must not contain NUL (\\u0000) characters.",
            status_code=400,
        )
    return payload, None


class ActionListView(AgentView):
    @extend_schema(tags=["agent"], **schema.LIST_ACTIONS)
    def get(self, request: Request) -> HttpResponse:
        return JsonResponse({"next": None, "previous": None, "results": actions_for(request.auth)})


class _ActionCallView(AgentView):
    dry_run = False

    def lookup_token(self, digest: str, request: Request) -> Any:
        """Authentication's token lookup, extended: also fetch the connection the call
        names (or the action's provider's usable ones) in the same statement."""
        action = str(self.kwargs.get("action", ""))
        provider_key, dot, _ = action.partition(".")
        payload, problem = _body(request)
        ref = payload.get("connection") if payload is not None else None
        if (
            not dot
            or payload is None
            or not isinstance(ref, str | int | None)
            or has_nul(action)  # cannot name anything; the service answers it
            or db_connection.vendor != "postgresql"  # LATERAL: PostgreSQL only
        ):
            return token_by_digest(digest)
        return token_with_connections(digest, provider_key, ref)

    def post(self, request: Request, action: str) -> HttpResponse:
        payload, problem = _body(request)
        if problem is not None:
            return problem
        assert payload is not None
        connection = payload.get("connection")
        action_input = payload.get("input", {})
        field_errors: dict[str, str] = {}
        if connection is not None and not isinstance(connection, str | int):
            field_errors["connection"] = "Give a connection id or name."
        if not isinstance(action_input, dict):
            field_errors["input"] = "The input must be a JSON object."
        if field_errors:
            return error_response(
                "invalid_input",
                "The request has invalid fields.",
                status_code=400,
                details={"fields": field_errors},
            )
        result = execute_action(
            ctx=request.auth,
            action_name=action,
            connection_ref=connection,
            input=action_input,
            dry_run=self.dry_run,
            request_meta=request_meta(request),
        )
        if result.error is not None:
            return render_error(result)
        if self.dry_run:
            return JsonResponse(
                {
                    "decision": result.decision,
                    "reason": result.reason,
                    "rule_id": result.rule_id,
                    "connection": result.connection,
                }
            )
        return JsonResponse(
            {"status": result.upstream_status, "headers": result.headers, "body": result.body}
        )


class ExecuteView(_ActionCallView):
    dry_run = False

    @extend_schema(tags=["agent"], **schema.EXECUTE)
    def post(self, request: Request, action: str) -> HttpResponse:
        return super().post(request, action)


class CheckView(_ActionCallView):
    dry_run = True

    @extend_schema(tags=["agent"], **schema.CHECK)
    def post(self, request: Request, action: str) -> HttpResponse:
        return super().post(request, action)


@extend_schema(tags=["agent"], **schema.PROXY)
class ProxyView(AgentView):
    def _proxy(self, request: Request, connection: str, path: str = "") -> HttpResponse:
        problem = too_large(request)
        if problem is not None:
            return problem
        body = request._request.body
        if len(body) > MAX_REQUEST_BYTES:
            return error_response(
                "request_too_large", "The request body is too large.", status_code=413
            )
        result = proxy_call(
            ctx=request.auth,
            connection_ref=connection,
            method=request.method or "GET",
            path=path,
            query=request.META.get("QUERY_STRING", ""),
            body=body,
            content_type=request.META.get("CONTENT_TYPE", ""),
            request_meta=request_meta(request),
        )
        if result.error is not None:
            return render_error(result)
        response = HttpResponse(
            result.raw_body,
            status=result.upstream_status or 502,
            content_type=result.headers.get("content-type"),
        )
        for name, value in result.headers.items():
            if name != "content-type":
                response[name] = value
        return response

    get = post = put = patch = delete = head = _proxy


# APIView.as_view() is csrf_exempt; a Bearer token is never sent ambiently anyway.
action_list = ActionListView.as_view()
execute = ExecuteView.as_view()
check = CheckView.as_view()
proxy = ProxyView.as_view()
