"""Hostile agent input never gets a 5xx, and every authenticated call is on record.

Hypothesis builds bodies the red team used (nesting inside `input` / MCP
`arguments`, nesting past the interpreter's recursion limit, lone UTF-16
surrogates, NUL, NaN, wrong JSON-RPC types) and sends them to execute, check,
the proxy and MCP with a valid token. Each call must answer below 500, and each
must leave exactly one final audit event (an attempt, when the call got that
far, is recorded in addition)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.audit.models import AuditEvent
from apps.broker.tests.conftest import Agent, make_agent
from apps.broker.tests.upstream import RecordingUpstream
from apps.organizations.models import Organization

RULES: list[dict[str, Any]] = [
    {"kind": "action", "provider_key": "sandbox", "action_pattern": "sandbox.list_projects"},
    {
        "kind": "action",
        "provider_key": "sandbox",
        "action_pattern": "sandbox.list_tasks",
        "constraints": [{"field": "project_id", "op": "one_of", "value": [1, 2]}],
    },
]


def _nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def _deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


hostile_values = st.one_of(
    st.integers(1, 120).map(_nested),
    st.integers(1, 120).map(_deep_object),
    st.just(_nested(60_000)),  # past the interpreter's recursion limit
    st.sampled_from(
        [
            '"\\ud800"',
            '"\\udfff tail"',
            '{"\\ud83d": 1}',
            '"a\\u0000b"',
            "NaN",
            "Infinity",
            "-Infinity",
            "1e999",
            '"' + "x" * 5000 + '"',
            "null",
            "[]",
            '"text"',
            "true",
            "12",
            '{"project_id": "\\ud800"}',
            '{"project_id": [' + _nested(80) + "]}",
            '{"project_id": 1}',
        ]
    ),
)

actions = st.sampled_from(
    ["sandbox.list_projects", "sandbox.list_tasks", "sandbox.nope", "sand%00box.list_tasks"]
)


@st.composite
def agent_calls(draw: st.DrawFn) -> tuple[str, str, str]:
    """(surface, path, raw body)."""
    surface = draw(st.sampled_from(["execute", "check", "proxy", "mcp"]))
    value = draw(hostile_values)
    if surface in ("execute", "check"):
        action = draw(actions)
        shape = draw(st.sampled_from(["input", "connection", "body"]))
        body = {
            "input": f'{{"input": {value}}}',
            "connection": f'{{"connection": {value}, "input": {{}}}}',
            "body": value,
        }[shape]
        return surface, f"/api/v1/actions/{action}/{surface}", body
    if surface == "proxy":
        path = draw(st.sampled_from(["projects", "projects/1%00x", "a/..;/b", "%ED%A0%80"]))
        query = draw(st.sampled_from(["", "q=%00", "q=%ED%A0%80", "q=" + "%5B" * 200]))
        return surface, f"/api/v1/proxy/sandbox/{path}?{query}", value
    shape = draw(st.sampled_from(["arguments", "params", "body", "name"]))
    params = {
        "arguments": f'{{"name": "sandbox.list_tasks", "arguments": {value}}}',
        "params": value,
        "body": None,
        "name": f'{{"name": {value}, "arguments": {{}}}}',
    }[shape]
    if params is None:
        return surface, "/mcp", value
    body = f'{{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {params}}}'
    return surface, "/mcp", body


@pytest.fixture
def hostile_agent(org: Organization, upstream: RecordingUpstream) -> Agent:  # noqa: ARG001 - set up first, for its side effect
    """One agent for every example (Hypothesis runs them within one test)."""
    from apps.connections.models import Connection

    connection = Connection.objects.create(
        organization=org, provider_key="sandbox", name="sandbox", auth_type="api_key", api_key="k"
    )
    proxy: dict[str, Any] = {
        "kind": "proxy",
        "provider_key": "sandbox",
        "connection": connection.pk,
        "methods": ["GET", "POST"],
        "path_glob": "/**",
    }
    return make_agent(org, rules=[*RULES, proxy], connection=connection)


def _final_events(org: Organization) -> int:
    return (
        AuditEvent.objects.filter(organization=org, worker_id__isnull=False)
        .exclude(action__endswith=".attempt")
        .count()
    )


@pytest.mark.django_db
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(call=agent_calls())
def test_hostile_bodies_get_a_clear_answer_and_an_audit_event(
    org: Organization, hostile_agent: Agent, call: Any
) -> None:
    agent = hostile_agent
    surface, path, body = call
    before = _final_events(org)
    client = Client()
    headers = {**agent.headers}
    if surface == "mcp":
        headers["HTTP_MCP_PROTOCOL_VERSION"] = "2025-11-25"
    response = client.generic(
        "POST", path, body.encode("utf-8", "surrogatepass"), "application/json", **headers
    )
    assert response.status_code < 500, (surface, path, body[:200], response.content[:300])
    if response.status_code >= 400 and response["Content-Type"].startswith("application/json"):
        payload = json.loads(response.content)
        assert "error" in payload
    assert _final_events(org) == before + 1, (surface, path, body[:200], response.content[:300])
