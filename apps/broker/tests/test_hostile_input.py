"""Hostile input never gets a 5xx; every authenticated agent call is on record.

Hypothesis builds bodies the red team used (nesting inside `input` / MCP
`arguments`, nesting past the interpreter's recursion limit, lone UTF-16
surrogates, NUL, NaN, wrong JSON-RPC types) and sends them to execute, check,
the proxy and MCP with a valid token. Each call must answer below 500, and each
must leave exactly one final audit event (an attempt, when the call got that
far, is recorded in addition)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.audit.models import AuditEvent
from apps.broker.tests.conftest import Agent, make_agent
from apps.broker.tests.upstream import RecordingUpstream
from apps.core.middleware import answers_json
from apps.organizations.models import Organization
from tests.test_tenant_isolation import Route, Victim, all_routes, build_path, build_victim, fill

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


# --- every JSON endpoint, authenticated or not ------------------------------------------
#
# The same hostile bodies go to every route of the URLconf that answers JSON (the agent
# and management APIs, MCP, the OAuth client endpoints), with no credentials and with
# the route's own (a worker token, the owner's personal token), on real objects of the
# organization (tests/test_tenant_isolation.py builds one of each). A new endpoint joins
# by being routed. None may answer 500 to any body (issue 21, item 6).

# The regex routes, which cannot be filled from their parameters: a concrete path each.
REGEX_ROUTES = {r"^proxy/(?P<connection>[^/]+)/(?P<path>[\s\S]+)$": "proxy/sandbox/projects"}

REPORTED_BODIES = [
    _nested(100_000),  # a 100k-deep body (the red team's, to DRF and /oauth/register/)
    _deep_object(100_000),
    '{"client_name": "\\ud800", "name": "\\ud800", "redirect_uris": ["http://127.0.0.1/cb"]}',
    '{"name": "a\\u0000b", "document": {"openapi": "3.0.0", "x": "\\u0000"}}',
    '{"name": NaN, "days": 1e999}',
    "[" * 60 + "]" * 60,
]


@dataclass(frozen=True)
class Endpoint:
    path: str
    method: str
    headers: dict[str, str]  # the route's own credentials; an empty dict for none

    def __str__(self) -> str:
        auth = "authenticated" if self.headers else "anonymous"
        return f"{self.method} {self.path} ({auth})"


def _methods(route: Route) -> list[str]:
    view_class = route.view_class
    if view_class is None:  # a function view (MCP): it takes POST
        return ["POST"]
    return [m.upper() for m in ("post", "put", "patch") if hasattr(view_class, m)]


def json_endpoints(victim: Victim, worker_raw: str, personal_raw: str) -> list[Endpoint]:
    """Every routed (path, write method) that answers JSON, with and without credentials."""
    endpoints = []
    for route in all_routes():
        if route.is_regex:
            prefix, _, regex = route.route.partition("^")
            if not answers_json("/" + prefix):
                continue
            assert "^" + regex in REGEX_ROUTES, f"add {route.route} to REGEX_ROUTES"
            path = "/" + prefix + REGEX_ROUTES["^" + regex]
        else:
            kwargs, _ = fill(route, victim, victim.org.slug)
            path = build_path(route, kwargs)
        if not answers_json(path):
            continue
        if path.startswith("/api/v1/orgs/"):
            own = {"Authorization": f"Bearer {personal_raw}"}
        elif path.startswith("/oauth/"):
            own = {}
        else:
            own = {"Authorization": f"Bearer {worker_raw}"}
        for method in _methods(route):
            endpoints.append(Endpoint(path, method, {}))
            if own:
                endpoints.append(Endpoint(path, method, own))
    return endpoints


@pytest.fixture
def every_endpoint(upstream: RecordingUpstream) -> list[Endpoint]:  # noqa: ARG001 - set up first, for its side effect
    from apps.accounts.services import personal_token_mint

    victim = build_victim()
    agent = make_agent(victim.org, rules=RULES)
    _, personal = personal_token_mint(user=victim.owner, organization=victim.org, name="fuzz")
    endpoints = json_endpoints(victim, agent.raw, personal)
    paths = {e.path for e in endpoints}
    # The walk reaches every kind of JSON endpoint: a guard against a walk gone empty.
    assert {"/mcp", "/oauth/register/", "/api/v1/proxy/sandbox/projects"} <= paths
    assert any(p.endswith("/execute") for p in paths)
    assert any(p.endswith("/openapi-import/") for p in paths)
    assert len({e.path for e in endpoints if e.path.startswith("/api/v1/orgs/")}) > 30
    return endpoints


def _send(endpoint: Endpoint, body: bytes) -> Any:
    response = Client(headers=endpoint.headers).generic(
        endpoint.method, endpoint.path, body, "application/json"
    )
    assert response.status_code < 500, (str(endpoint), body[:120], response.content[:300])
    if response.status_code >= 400 and response["Content-Type"].startswith("application/json"):
        assert "error" in json.loads(response.content), (str(endpoint), response.content[:300])
    return response


@pytest.mark.django_db
def test_every_json_endpoint_refuses_the_reported_bodies(every_endpoint: list[Endpoint]) -> None:
    for endpoint in every_endpoint:
        for body in REPORTED_BODIES:
            _send(endpoint, body.encode("utf-8", "surrogatepass"))
        _send(endpoint, b'{"name": "\xff\xfe not UTF-8"}')


@pytest.mark.django_db
def test_the_reported_bodies_are_400_where_they_were_500(every_endpoint: list[Endpoint]) -> None:
    import_path = next(e.path for e in every_endpoint if e.path.endswith("/openapi-import/"))
    personal = next(e for e in every_endpoint if e.path == import_path and e.headers)
    deep = _send(personal, _nested(100_000).encode())
    assert deep.status_code == 400
    assert deep.json()["error"]["code"] == "parse_error"
    register = Endpoint("/oauth/register/", "POST", {})
    for body in REPORTED_BODIES[:3]:
        refused = _send(register, body.encode("utf-8", "surrogatepass"))
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_client_metadata"


@pytest.mark.django_db
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_json_endpoint_answers_500_to_a_hostile_body(
    every_endpoint: list[Endpoint], data: st.DataObject
) -> None:
    endpoint = data.draw(st.sampled_from(every_endpoint))
    value = data.draw(hostile_values)
    shape = data.draw(st.sampled_from(["body", "field", "list"]))
    body = {"body": value, "field": f'{{"name": {value}, "rules": {value}}}', "list": f"[{value}]"}
    _send(endpoint, body[shape].encode("utf-8", "surrogatepass"))
