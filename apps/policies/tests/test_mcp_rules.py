"""Rules for the tools of MCP connections: the same deny-by-default evaluate() as
actions (patterns, read-only class, constraints, windows, approvals), validated
against the connection's listed tools, in plain words, in the YAML/JSON document."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from apps.connections.mcp_models import McpServer, McpTool, definition_digest
from apps.connections.models import Connection
from apps.organizations.models import Organization
from apps.policies.evaluate import Call, describe_rule, evaluate, rule_spec_from_values
from apps.policies.selectors import role_document
from apps.policies.services import role_create
from apps.policies.validation import clean_rules


def mcp_rule(pattern: str = "*", connection_id: int = 9, **kw: Any) -> Any:
    return rule_spec_from_values(
        rule_id=kw.pop("rule_id", 1),
        kind="mcp",
        provider_key="mcp",
        action_pattern=pattern,
        connection_id=connection_id,
        connection_name="linear",
        **kw,
    )


def tool_call(tool: str = "create_issue", *, read_only: bool = False, **kw: Any) -> Call:
    return Call.for_mcp_tool(
        tool=tool,
        read_only=read_only,
        connection_id=kw.pop("connection_id", 9),
        connection_name="linear",
        input=kw.pop("input", {}),
        role_name="triage",
    )


def test_deny_by_default_and_the_rule_named() -> None:
    denied = evaluate([], tool_call())
    assert not denied.allowed
    assert denied.reason == (
        "Role 'triage' has no rule allowing tool 'create_issue' on connection 'linear'. "
        "An admin can add an MCP rule for create_issue."
    )
    allowed = evaluate([mcp_rule("create_*", rule_id=4)], tool_call())
    assert allowed.allowed
    assert allowed.rule_id == 4
    assert "rule #4 (tools matching 'create_*' of MCP connection 'linear')" in allowed.reason


def test_patterns_classes_and_connections() -> None:
    assert not evaluate([mcp_rule("get_*")], tool_call("create_issue")).allowed
    assert evaluate([mcp_rule("*")], tool_call("anything")).allowed
    read = mcp_rule("*", action_class="read")
    assert evaluate([read], tool_call("list", read_only=True)).allowed
    assert not evaluate([read], tool_call("delete", read_only=False)).allowed
    other = evaluate([mcp_rule("*", connection_id=10)], tool_call())
    assert not other.allowed
    assert "only on connection 'linear'" in other.reason
    # An action rule never allows a tool, nor an MCP rule an action.
    action = rule_spec_from_values(
        rule_id=2, kind="action", provider_key="mcp", action_pattern="mcp.*"
    )
    assert not evaluate([action], tool_call()).allowed
    as_action = Call.for_action(
        action_name="mcp.create_issue", action_class="write", connection_id=9
    )
    assert not evaluate([mcp_rule("*")], as_action).allowed


def test_constraints_approval_and_words() -> None:
    rule = mcp_rule(
        "create_issue",
        constraints=[{"field": "team", "op": "one_of", "value": ["ENG", "OPS"]}],
        approval={"required": True},
        rate_limit_per_minute=5,
    )
    wrong = evaluate([rule], tool_call(input={"team": "SALES"}))
    assert not wrong.allowed
    assert not wrong.approval_required
    assert "input.team must be one of ENG, OPS (got 'SALES')" in wrong.reason
    right = evaluate([rule], tool_call(input={"team": "ENG"}))
    assert right.approval_required
    assert "only after a person approves" in right.reason
    assert describe_rule(rule) == (
        "tool 'create_issue' of MCP connection 'linear', if input.team is one of ENG, OPS, "
        "at most 5 calls per minute per token after approval by an admin (request valid "
        "for 1 h)"
    )


@pytest.fixture
def linear(org: Organization) -> Connection:
    connection = Connection.objects.create(
        organization=org, provider_key="mcp", name="linear", auth_type="none"
    )
    McpServer.objects.create(connection=connection, transport="http", url="https://l.example/mcp")
    for name, schema, read_only in (
        ("create_issue", {"properties": {"team": {"type": "string"}}}, False),
        ("list_issues", {"properties": {"query": {"type": "string"}}}, True),
    ):
        definition = {
            "name": name,
            "inputSchema": {"type": "object", **schema},
            "annotations": {"readOnlyHint": read_only},
        }
        McpTool.objects.create(
            organization=org,
            connection=connection,
            name=name,
            definition=definition,
            digest=definition_digest(definition),
        )
    return connection


@pytest.mark.django_db
def test_validation_against_the_connections_tools(org: Organization, linear: Connection) -> None:
    [cleaned] = clean_rules(
        organization=org,
        rules=[
            {
                "kind": "mcp",
                "connection": linear.pk,
                "action_pattern": "create_*",
                "constraints": [{"field": "team", "op": "equals", "value": "ENG"}],
            }
        ],
    )
    assert (cleaned["provider_key"], cleaned["action_pattern"]) == ("mcp", "create_*")
    with pytest.raises(ValidationError) as bad:
        clean_rules(
            organization=org,
            rules=[
                {"kind": "mcp", "action_pattern": "*"},
                {"kind": "mcp", "connection": linear.pk, "action_pattern": "delete_*"},
                {
                    "kind": "mcp",
                    "connection": linear.pk,
                    "action_pattern": "list_issues",
                    "constraints": [{"field": "team", "op": "equals", "value": "ENG"}],
                },
                {"kind": "mcp", "connection": linear.pk, "action_pattern": "create issue"},
            ],
        )
    errors = bad.value.message_dict
    assert errors["rules.0.connection"] == ["An MCP rule names one MCP connection."]
    assert errors["rules.1.action_pattern"][0].startswith(
        "No tool of 'linear' matches 'delete_*' (its tools: create_issue, list_issues)"
    )
    assert "'team' is not an input field of list_issues" in errors["rules.2.constraints.0.field"][0]
    assert "rules.3.action_pattern" in errors


@pytest.mark.django_db
def test_an_mcp_rule_must_name_an_mcp_connection(org: Organization) -> None:
    plain = Connection.objects.create(
        organization=org, provider_key="sandbox", name="sbx", auth_type="api_key"
    )
    with pytest.raises(ValidationError) as bad:
        clean_rules(
            organization=org,
            rules=[{"kind": "mcp", "connection": plain.pk, "action_pattern": "*"}],
        )
    assert bad.value.message_dict["rules.0.connection"] == [
        "Connection 'sbx' is not an MCP server."
    ]


@pytest.mark.django_db
def test_the_role_document_carries_mcp_rules(org: Organization, linear: Connection) -> None:
    role = role_create(
        organization=org,
        name="triage",
        rules=[
            {"kind": "mcp", "connection": linear.pk, "action_pattern": "*", "action_class": "read"}
        ],
    )
    [rule] = role_document(role)["rules"]
    assert rule["kind"] == "mcp"
    assert rule["connection_name"] == "linear"
    assert (rule["action_pattern"], rule["action_class"]) == ("*", "read")
