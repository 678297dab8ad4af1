from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings
from pytest_django.fixtures import Settings

from apps.providers.registry import (
    BaseURLParamError,
    FieldError,
    InvalidInput,
    build_request,
    get_action,
    get_provider,
    resolve_base_url_params,
    validate_input,
)

SANDBOX = "http://127.0.0.1:7000/sandbox"


@pytest.fixture(autouse=True)
def _sandbox(settings: Settings) -> None:
    settings.GRANTRY_SANDBOX_URL = SANDBOX
    settings.GRANTRY_SANDBOX_ENABLED = True


def call(name: Any, data: Any, **kwargs: Any) -> Any:
    action = get_action(name)
    return build_request(get_provider(action.provider_key), action, data, **kwargs)


def test_sandbox_create_task() -> None:
    prepared = call("sandbox.create_task", {"project_id": 7, "title": "Ship", "priority": 2})
    assert prepared.method == "POST"
    assert prepared.url == f"{SANDBOX}/api/v1/projects/7/tasks"
    assert prepared.json_body == {"title": "Ship", "priority": 2}
    assert prepared.query == {}
    assert prepared.form_body is None


def test_get_sends_query_not_body_and_booleans_as_words() -> None:
    prepared = call("sandbox.list_tasks", {"project_id": 1, "done": False})
    assert prepared.json_body is None
    assert prepared.query == {"done": "false"}
    assert call("sandbox.list_tasks", {"project_id": 1}).query == {}


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("a/b", "a%2Fb"),
        ("a..b/c..", "a..b%2Fc.."),
        ("x?y=1#z", "x%3Fy%3D1%23z"),
        ("%2e%2e", "%252e%252e"),
        ("group/sub group", "group%2Fsub%20group"),
    ],
)
def test_path_values_stay_inside_their_segment(value: str, segment: str) -> None:
    prepared = call("gitlab.get_project", {"project_id": value})
    assert prepared.url == f"https://gitlab.com/api/v4/projects/{segment}"
    assert prepared.path.count("/") == 2


@pytest.mark.parametrize("value", ["..", ".", ""])
def test_dot_segments_are_refused(value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        call("github.get_repo", {"owner": "octo", "repo": value})
    assert info.value.errors[0].path == "/repo"


@pytest.mark.parametrize(
    "value",
    ["../../admin", "x/../../y", "allowed/../../other", "a/..", "../a", "a\\b", "..\\admin"],
)
def test_dot_dot_parts_and_backslashes_in_path_values_are_refused(value: str) -> None:
    # Upstreams that decode %2F before routing would otherwise reach another resource.
    with pytest.raises(InvalidInput) as info:
        call("gitlab.get_project", {"project_id": value})
    assert info.value.errors == [
        FieldError("/project_id", "Must not contain '..' parts or backslashes.")
    ]


def test_invalid_input_is_refused_with_field_errors() -> None:
    action = get_action("sandbox.create_task")
    errors = validate_input(action, {"project_id": "7", "priority": 9, "extra": 1})
    by_path = {e.path: e.message for e in errors}
    assert set(by_path) == {"/project_id", "/priority", "/title", "/extra"}
    assert "integer" in by_path["/project_id"]
    assert "maximum" in by_path["/priority"] or "5" in by_path["/priority"]
    assert by_path["/title"] == "This field is required."
    with pytest.raises(InvalidInput) as info:
        build_request(get_provider("sandbox"), action, {"project_id": 1})
    assert info.value.errors == [FieldError("/title", "This field is required.")]


def test_non_object_input_and_nested_pointers() -> None:
    action = get_action("google.calendar_create_event")
    assert validate_input(action, ["x"]) == [FieldError("", "The input must be a JSON object.")]
    errors = validate_input(
        action,
        {
            "calendar_id": "primary",
            "summary": "x",
            "start_time": "2026-01-01T10:00:00Z",
            "end_time": "2026-01-01T11:00:00Z",
            "attendees": [{"email": "a@b.c"}, {"mail": 1}],
        },
    )
    paths = {e.path for e in errors}
    assert "/attendees/1/email" in paths
    assert "/attendees/1/mail" in paths
    assert (
        validate_input(
            action,
            {
                "calendar_id": "primary",
                "summary": "x",
                "start_time": "2026-01-01T10:00:00Z",
                "end_time": "2026-01-01T11:00:00Z",
            },
        )
        == []
    )


def test_body_templates_leave_out_absent_values() -> None:
    prepared = call(
        "google.calendar_create_event",
        {
            "calendar_id": "primary",
            "summary": "Standup",
            "start_time": "2026-01-01T10:00:00Z",
            "end_time": "2026-01-01T10:15:00Z",
        },
    )
    assert prepared.url == "https://www.googleapis.com/calendar/v3/calendars/primary/events"
    assert prepared.json_body == {
        "summary": "Standup",
        "start": {"dateTime": "2026-01-01T10:00:00Z"},
        "end": {"dateTime": "2026-01-01T10:15:00Z"},
    }
    linear = call("linear.create_comment", {"issueId": "ENG-1", "body": "hi"})
    assert linear.json_body["variables"] == {"issueId": "ENG-1", "body": "hi"}
    assert linear.json_body["query"].startswith("mutation CommentCreate")
    zendesk_only_status = call(
        "zendesk.update_ticket",
        {"ticket_id": 3, "status": "solved"},
        base_url_params={"subdomain": "acme"},
    )
    assert zendesk_only_status.json_body == {"ticket": {"status": "solved"}}


def test_wire_names_form_bodies_and_default_headers() -> None:
    graph = call("microsoft.list_messages", {"top": 5, "filter": "isRead eq false"})
    assert graph.query == {"$top": 5, "$filter": "isRead eq false"}
    refund = call("stripe.create_refund", {"payment_intent": "pi_123", "amount": 500})
    assert refund.form_body == {"payment_intent": "pi_123", "amount": 500}
    assert refund.json_body is None
    notion = call("notion.get_page", {"page_id": "abc"})
    assert notion.headers == {"Notion-Version": "2022-06-28"}
    notion.headers["X-Mutated"] = "1"
    assert "X-Mutated" not in get_provider("notion").default_headers


def test_base_url_params_fill_every_url_and_refuse_unsafe_values() -> None:
    zendesk = resolve_base_url_params(get_provider("zendesk"), {"subdomain": "acme"})
    assert zendesk.api_base_url == "https://acme.zendesk.com/api/v2"
    assert zendesk.token_url == "https://acme.zendesk.com/oauth/tokens"
    assert zendesk.userinfo_url == "https://acme.zendesk.com/api/v2/users/me.json"
    for bad in ["evil.com/", "a@b", "x#", "-x", "a..b", "", None, 5, "x" * 64, "a:80"]:
        with pytest.raises(BaseURLParamError):
            call("zendesk.get_ticket", {"ticket_id": 1}, base_url_params={"subdomain": bad})
    with pytest.raises(BaseURLParamError):
        call("zendesk.get_ticket", {"ticket_id": 1})


def test_overrides_apply_to_built_requests() -> None:
    with override_settings(GRANTRY_PROVIDER_URLS={"github": "http://127.0.0.1:8080/gh"}):
        prepared = call("github.get_issue", {"owner": "o", "repo": "r", "issue_number": 3})
    assert prepared.url == "http://127.0.0.1:8080/gh/repos/o/r/issues/3"


def test_airtable_records_reach_their_table_and_carry_fields() -> None:
    base = "https://api.airtable.com/v0/appAbc123DEF45678"
    created = call(
        "airtable.create_record",
        {
            "base_id": "appAbc123DEF45678",
            "table": "Sprint tasks",
            "fields": {"Name": "Ship", "Points": 3},
            "typecast": True,
        },
    )
    assert (created.method, created.url) == ("POST", f"{base}/Sprint%20tasks")
    assert created.json_body == {"fields": {"Name": "Ship", "Points": 3}, "typecast": True}
    listed = call(
        "airtable.list_records",
        {"base_id": "appAbc123DEF45678", "table": "tblX", "filterByFormula": "{Done} = 0"},
    )
    assert listed.url == f"{base}/tblX"
    assert listed.json_body is None
    assert listed.query == {"filterByFormula": "{Done} = 0"}
    errors = validate_input(
        get_action("airtable.get_record"),
        {"base_id": "https://evil", "table": "t", "record_id": "rec1"},
    )
    assert [e.path for e in errors] == ["/base_id"]
