"""Management API: list, detail, export with a personal API token."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from pytest_django.live_server_helper import LiveServer

from apps.accounts.services import personal_token_mint
from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.audit.tests.helpers import broker_event
from apps.organizations.models import Organization


def api(org: Organization, name: Any, **kwargs: Any) -> Any:
    return reverse(f"org_api:{name}", kwargs={"org_slug": org.slug, **kwargs})


def bearer(user: Any, org: Organization) -> Any:
    _, raw = personal_token_mint(user=user, organization=org, name="audit automation")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


@pytest.mark.django_db
def test_list_filters_and_cursor_pages(client: Client, org: Organization, reviewer: User) -> None:
    denied = [broker_event(org, decision="denied").pk for _ in range(5)]
    broker_event(org)
    auth = bearer(reviewer, org)
    query: dict[str, Any] = {"decision": "denied", "page_size": 2}
    response = client.get(api(org, "audit-event-list"), query, **auth)
    assert response.status_code == 200
    body = response.json()
    assert [e["id"] for e in body["results"]] == denied[::-1][:2]
    seen = [e["id"] for e in body["results"]]
    while body["next"]:
        body = client.get(body["next"], **auth).json()
        seen += [e["id"] for e in body["results"]]
    assert seen == denied[::-1]
    assert "hash" in body["results"][0]
    assert "prev_hash" in body["results"][0]


@pytest.mark.django_db
def test_invalid_filter_uses_the_error_shape(
    client: Client, org: Organization, reviewer: User
) -> None:
    response = client.get(api(org, "audit-event-list"), {"status": "9xx"}, **bearer(reviewer, org))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_filter"
    assert "status" in error["details"]["fields"]


@pytest.mark.django_db
def test_detail_and_tenant_boundary(
    client: Client,
    org: Organization,
    other_org: Organization,
    reviewer: User,
    member: User,
    outsider: User,
) -> None:
    event = audit_record(action="org.created", organization=org)
    foreign = audit_record(action="org.created", organization=other_org)
    auth = bearer(reviewer, org)
    assert (
        client.get(api(org, "audit-event-detail", pk=event.pk), **auth).json()["hash"] == event.hash
    )
    assert client.get(api(org, "audit-event-detail", pk=foreign.pk), **auth).status_code == 404
    member_auth = bearer(member, org)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("audit-event-list", {}),
        ("audit-event-detail", {"pk": event.pk}),
        ("audit-export", {"fmt": "csv"}),
    ]
    for name, kw in cases:
        assert client.get(api(org, name, **kw), **member_auth).status_code == 403
        assert client.get(api(org, name, **kw), **bearer(outsider, other_org)).status_code == 404


@pytest.mark.django_db
def test_api_export_csv_is_streamed_filtered_and_audited(
    client: Client, org: Organization, reviewer: User
) -> None:
    broker_event(org, decision="denied", reason="=cmd|' /C calc'!A0")
    broker_event(org)
    response = client.get(
        api(org, "audit-export", fmt="csv"),
        {"decision": "denied"},
        HTTP_ACCEPT="text/csv",
        **bearer(reviewer, org),
    )
    assert response.status_code == 200
    assert response.streaming
    rows = list(csv.DictReader(io.StringIO(response.getvalue().decode(), newline="")))
    assert [r["decision"] for r in rows] == ["denied"]
    assert rows[0]["reason"] == "'=cmd|' /C calc'!A0"
    event = AuditEvent.objects.get(action="audit.exported")
    assert event.metadata["surface"] == "api"
    assert event.metadata["filter"] == {"decision": "denied"}
    assert (
        client.get(api(org, "audit-export", fmt="xml"), **bearer(reviewer, org)).status_code == 404
    )


def test_api_jsonl_export_over_real_http(
    live_server: LiveServer, org: Organization, reviewer: User
) -> None:
    ids = [broker_event(org, reason=f"line {i}\nsecond line").pk for i in range(25)]
    _, raw = personal_token_mint(user=reviewer, organization=org, name="automation")
    with httpx.stream(
        "GET",
        live_server.url + api(org, "audit-export", fmt="jsonl"),
        params={"action": "broker.execute"},
        headers={"Authorization": f"Bearer {raw}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        assert "content-length" not in response.headers  # streamed
        lines = list(response.iter_lines())
    decoded = [json.loads(line) for line in lines if line]
    assert [d["id"] for d in decoded] == ids
    assert decoded[0]["reason"] == "line 0\nsecond line"


@pytest.mark.django_db
def test_schema_documents_the_audit_endpoints() -> None:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    paths = schema["paths"]
    assert "/api/v1/orgs/{org_slug}/audit/events/" in paths
    listed = paths["/api/v1/orgs/{org_slug}/audit/events/"]["get"]
    assert {"decision", "worker", "action", "start"} <= {p["name"] for p in listed["parameters"]}
    export = paths["/api/v1/orgs/{org_slug}/audit/export.{fmt}"]["get"]
    assert {"text/csv", "application/x-ndjson"} <= set(export["responses"]["200"]["content"])
