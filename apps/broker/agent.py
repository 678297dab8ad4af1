"""The agent API: list, execute, check and proxy, authenticated by a worker token.

Views stay thin: authenticate (DRF, `WorkerTokenAuthentication`), cap the
body, parse it, call one broker service, render its `BrokerResult`. The hot
path deliberately skips DRF's parser negotiation and serializers (the body
is one small JSON object) and renders with Django's `JsonResponse`.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import unquote

from django.http import HttpResponse, JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView
from typing_extensions import override

from apps.broker import schema
from apps.broker.catalog import actions_for
from apps.broker.inputs import HostileInput, check_size, check_text, parse_json
from apps.broker.pipeline import (
    ActionTarget,
    ProxyTarget,
    RequestMeta,
    reject_input,
    run,
    start,
)
from apps.broker.results import BrokerResult
from apps.core.api import error_response
from apps.workers.auth import AgentContext, WorkerTokenAuthentication


class IsAgent(BasePermission):
    """The request carries a valid worker token (request.auth is an AgentContext)."""

    @override
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, AgentContext)


def render_pending(result: BrokerResult) -> HttpResponse:
    """202: the call waits for a person's approval (docs/agent-api.md, "Approvals")."""
    response = JsonResponse(result.pending, status=202)
    for name, value in result.headers.items():
        response[name] = value
    return response


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
    """Base of the agent API views: worker-token authentication."""

    authentication_classes = (WorkerTokenAuthentication,)
    permission_classes = (IsAgent,)


class ActionListView(AgentView):
    @extend_schema(tags=["agent"], **schema.LIST_ACTIONS)
    def get(self, request: Request) -> HttpResponse:
        ctx = cast(AgentContext, request.auth)
        return JsonResponse({"next": None, "previous": None, "results": actions_for(ctx)})


class _ActionCallView(AgentView):
    dry_run = False

    def post(self, request: Request, action: str) -> HttpResponse:
        ctx = cast(AgentContext, request.auth)
        meta = RequestMeta.from_request(request)
        verb = "broker.check" if self.dry_run else "broker.execute"
        try:
            check_size(request.META.get("CONTENT_LENGTH"))
            payload = parse_json(request._request.body, empty={})
            check_text(action, "The action name")
            if not isinstance(payload, dict):
                raise HostileInput("The request body must be a JSON object.")
            connection = payload.get("connection")
            action_input = payload.get("input", {})
            if connection is not None and (
                isinstance(connection, bool) or not isinstance(connection, str | int)
            ):
                raise HostileInput("'connection' must be a connection id or name.")
            if not isinstance(action_input, dict):
                raise HostileInput("'input' must be a JSON object.")
        except HostileInput as problem:
            return render_error(reject_input(ctx, meta, verb, problem, action=action))
        meta = RequestMeta.from_request(
            request, approval_id=payload.get("approval") or "", reason=payload.get("reason") or ""
        )
        call = start(
            ctx, ActionTarget(action, connection, action_input), meta, dry_run=self.dry_run
        )
        result = run(call)
        if result.error is not None:
            return render_error(result)
        if result.pending is not None:
            return render_pending(result)
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
        ctx = cast(AgentContext, request.auth)
        meta = RequestMeta.from_request(
            request,
            approval_id=request.META.get("HTTP_GRANTRY_APPROVAL", ""),
            reason=request.META.get("HTTP_GRANTRY_REASON", "")[:500],
        )
        query = request.META.get("QUERY_STRING", "")
        try:
            check_size(request.META.get("CONTENT_LENGTH"))
            body = request._request.body
            check_size(None, len(body))
            for text, what in ((connection, "The connection"), (path, "The path")):
                check_text(text, what)
            check_text(unquote(query), "The query string")
        except HostileInput as problem:
            return render_error(
                reject_input(
                    ctx, meta, "broker.proxy", problem, method=request.method or "", path=path
                )
            )
        target = ProxyTarget(
            connection_ref=connection,
            method=(request.method or "GET").upper(),
            path=path,
            query=query,
            body=body,
            content_type=request.META.get("CONTENT_TYPE", ""),
        )
        result = run(start(ctx, target, meta))
        if result.error is not None:
            return render_error(result)
        if result.pending is not None:
            return render_pending(result)
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
