"""OpenAPI descriptions of the agent API (drf-spectacular), with examples."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    inline_serializer,
)
from rest_framework import serializers
from typing_extensions import override

_error = inline_serializer(
    name="AgentError",
    fields={
        "error": inline_serializer(
            name="AgentErrorBody",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "details": serializers.DictField(),
                "request_id": serializers.CharField(),
            },
        )
    },
)

_call_request = inline_serializer(
    name="ActionCallRequest",
    fields={
        "connection": serializers.CharField(
            required=False,
            help_text="Connection id or name; optional when exactly one connection fits.",
        ),
        "input": serializers.DictField(
            required=False, help_text="The action's input, per its JSON Schema."
        ),
    },
)

_action = inline_serializer(
    name="AgentAction",
    fields={
        "name": serializers.CharField(),
        "description": serializers.CharField(),
        "action_class": serializers.ChoiceField(choices=["read", "write"]),
        "input_schema": serializers.DictField(),
        "connections": serializers.ListField(child=serializers.DictField()),
    },
)

_errors = {
    400: OpenApiResponse(_error, description="Invalid input (field errors); nothing was sent."),
    401: OpenApiResponse(_error, description="Missing, unknown, revoked or expired token."),
    403: OpenApiResponse(_error, description="Denied by the role, with the reason."),
    404: OpenApiResponse(_error, description="Unknown action or connection."),
    409: OpenApiResponse(_error, description="The connection needs re-authorisation."),
    413: OpenApiResponse(_error, description="Request body too large."),
    429: OpenApiResponse(_error, description="Rate-limited (Grantry or upstream); Retry-After."),
    502: OpenApiResponse(_error, description="Upstream unreachable or its answer too large."),
    503: OpenApiResponse(_error, description="The audit trail could not record the call."),
    504: OpenApiResponse(_error, description="Upstream timeout."),
}

_denied_example = OpenApiExample(
    "denied",
    status_codes=["403"],
    response_only=True,
    value={
        "error": {
            "code": "denied",
            "message": "Role 'triage' has no rule allowing action 'sandbox.create_task' on "
            "connection 'sandbox'. An admin can add an action rule for sandbox.create_task.",
            "details": {"action": "sandbox.create_task", "connection": "sandbox"},
            "request_id": "3f0c2b1e9a4d4e7f8b6a5c4d3e2f1a0b",
        }
    },
)

LIST_ACTIONS: dict[str, Any] = {
    "operation_id": "agent_actions_list",
    "summary": "The actions this token may call",
    "responses": {
        200: inline_serializer(
            name="AgentActionList",
            fields={
                "next": serializers.CharField(allow_null=True),
                "previous": serializers.CharField(allow_null=True),
                "results": serializers.ListField(child=_action),
            },
        ),
        401: _errors[401],
    },
    "examples": [
        OpenApiExample(
            "one action",
            response_only=True,
            value={
                "next": None,
                "previous": None,
                "results": [
                    {
                        "name": "sandbox.list_tasks",
                        "description": "List the tasks of a project.",
                        "action_class": "read",
                        "input_schema": {"type": "object", "properties": {}},
                        "connections": [{"id": 1, "name": "sandbox"}],
                    }
                ],
            },
        )
    ],
}

_action_param = OpenApiParameter(
    "action",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="Dotted action name, e.g. sandbox.list_tasks",
)

EXECUTE: dict[str, Any] = {
    "operation_id": "agent_action_execute",
    "summary": "Execute an action through a connection",
    "parameters": [_action_param],
    "request": _call_request,
    "responses": {
        200: inline_serializer(
            name="ActionResult",
            fields={
                "status": serializers.IntegerField(help_text="The upstream HTTP status."),
                "headers": serializers.DictField(help_text="Allowlisted upstream headers."),
                "body": serializers.JSONField(help_text="Parsed JSON, or text."),
            },
        ),
        **_errors,
    },
    "examples": [
        OpenApiExample(
            "list tasks",
            request_only=True,
            value={"connection": "sandbox", "input": {"project_id": 1}},
        ),
        OpenApiExample(
            "upstream answer",
            status_codes=["200"],
            response_only=True,
            value={
                "status": 200,
                "headers": {"content-type": "application/json"},
                "body": {"results": [{"id": 7, "title": "Write the report"}]},
            },
        ),
        _denied_example,
    ],
}

CHECK: dict[str, Any] = {
    "operation_id": "agent_action_check",
    "summary": "Dry run: would this call be allowed? Nothing is sent upstream.",
    "parameters": [_action_param],
    "request": _call_request,
    "responses": {
        200: inline_serializer(
            name="ActionCheck",
            fields={
                "decision": serializers.CharField(),
                "reason": serializers.CharField(),
                "rule_id": serializers.IntegerField(allow_null=True),
                "connection": serializers.CharField(),
            },
        ),
        **{k: v for k, v in _errors.items() if k not in (502, 504)},
    },
    "examples": [
        OpenApiExample(
            "allowed",
            status_codes=["200"],
            response_only=True,
            value={
                "decision": "allowed",
                "reason": "Allowed by rule #3 (action sandbox.list_tasks on any sandbox "
                "connection) for action 'sandbox.list_tasks'.",
                "rule_id": 3,
                "connection": "sandbox",
            },
        ),
        _denied_example,
    ],
}

PROXY: dict[str, Any] = {
    "summary": "Pass a raw call through to a connection's API (needs a proxy rule)",
    "request": OpenApiTypes.BINARY,
    "responses": {
        200: OpenApiResponse(OpenApiTypes.BINARY, description="The upstream answer."),
        **_errors,
    },
}


class WorkerTokenScheme(OpenApiAuthenticationExtension):
    """Documents `Authorization: Bearer gry_…` for the agent API."""

    target_class = "apps.workers.auth.WorkerTokenAuthentication"
    name = "workerToken"

    @override
    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "gry_ worker token",
            "description": "A worker token minted in the dashboard (Workers → Tokens). A "
            "token bound to a key (DPoP, RFC 9449) is sent as `Authorization: DPoP gry_…` "
            "with a fresh proof in the `DPoP` header instead (docs/agent-api.md, DPoP).",
        }
