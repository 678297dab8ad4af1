"""Issue 21 item 5: a hostile document never pins a CPU and never answers 500. It is read
in a child process capped in memory, CPU and wall time, off the web thread (a Celery
task), and refused with a clear message. Each case is timed against a bound."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings

from apps.providers.import_services import openapi_import_run
from apps.providers.models import ImportStatus, OpenAPIImport
from apps.providers.openapi.document import OpenAPIImportError, read_drafts, read_index

API = "/api/v1/orgs/acme/custom-providers/crm/openapi-import/"


def doubling(levels: int = 39) -> str:
    """Schemas that each reference the previous one twice: 2^39 nodes once expanded."""
    schemas: dict[str, Any] = {"S0": {"type": "object", "properties": {"v": {"type": "string"}}}}
    for i in range(1, levels + 1):
        previous = {"$ref": f"#/components/schemas/S{i - 1}"}
        schemas[f"S{i}"] = {"type": "object", "properties": {"a": previous, "b": previous}}
    body = {
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/S{levels}"}}}
    }
    wide = {
        "type": "object",
        "properties": {f"p{i}": {"$ref": "#/components/schemas/S12"} for i in range(4)},
    }
    return json.dumps(
        {
            "openapi": "3.0.3",
            "info": {"title": "bomb", "version": "1"},
            "paths": {
                "/deep": {
                    "post": {"requestBody": body, "responses": {"200": {"description": "ok"}}}
                },
                "/wide": {
                    "post": {
                        "requestBody": {"content": {"application/json": {"schema": wide}}},
                        "responses": {"200": {"description": "ok"}},
                    }
                },
                "/fine": {"get": {"responses": {"200": {"description": "ok"}}}},
            },
            "components": {"schemas": schemas},
        }
    )


def deep_yaml(depth: int = 5000) -> str:
    return (
        "openapi: 3.0.0\ninfo: {title: x, version: '1'}\npaths: {}\nx-deep: "
        + "[" * depth
        + "]" * depth
        + "\n"
    )


def test_schemas_that_double_at_each_reference_are_refused_within_the_budget() -> None:
    started = time.monotonic()
    operations = {op["key"]: op for op in read_index(doubling().encode())["operations"]}
    drafts = {d["key"]: d for d in read_drafts(doubling().encode(), list(operations))}
    elapsed = time.monotonic() - started
    assert drafts["GET /fine"]["problem"] == ""
    assert drafts["POST /deep"]["problem"] == "Its input schema is nested too deeply to import."
    assert drafts["POST /wide"]["problem"] == (
        "Its input schema is too large to import (more than 4000 parts once its references "
        "are expanded)."
    )
    assert elapsed < 10, f"{elapsed:.1f} s"


def test_a_5000_deep_yaml_flow_sequence_is_refused_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(OpenAPIImportError, match=r"nesting depth|nested more than"):
        read_index(deep_yaml().encode())
    assert time.monotonic() - started < 10


def test_deep_json_is_refused_with_the_depth() -> None:
    deep = '{"openapi": "3.0.0", "x": ' + "[" * 150 + "]" * 150 + "}"
    with pytest.raises(OpenAPIImportError, match="nested more than 100 levels deep"):
        read_index(deep.encode())


def test_the_wall_clock_deadline_stops_a_slow_reading(settings: Settings) -> None:
    settings.GRANTRY_OPENAPI_TIME_LIMIT = 1
    paths = {
        f"/p{i}/{{id}}": {
            "get": {
                "parameters": [{"name": "id", "in": "path", "required": True, "type": "string"}],
                "responses": {"200": {"description": "ok", "schema": {"type": "object"}}},
            }
        }
        for i in range(60_000)
    }
    slow = json.dumps({"swagger": "2.0", "info": {"title": "x", "version": "1"}, "paths": paths})
    started = time.monotonic()
    with pytest.raises(OpenAPIImportError, match=r"took longer than 1 s|more than 1 s of CPU"):
        read_index(slow.encode())
    assert time.monotonic() - started < 5


def test_the_memory_cap_stops_a_reading_that_needs_more(settings: Settings) -> None:
    settings.GRANTRY_OPENAPI_MEMORY_MB = 200
    big = json.dumps(
        {
            "openapi": "3.0.0",
            "info": {"title": "x", "version": "1"},
            "paths": {},
            "x-data": [[i, str(i), {"k": i}] for i in range(1_500_000)],
        }
    )
    settings.GRANTRY_OPENAPI_MAX_BYTES = len(big) + 1
    with pytest.raises(OpenAPIImportError, match="needed more than 200 MB of memory"):
        read_index(big.encode())


@pytest.mark.django_db
@pytest.mark.usefixtures("crm")
def test_hostile_documents_through_the_api_end_in_a_refusal_never_a_500(admin: User) -> None:
    client = Client()
    client.force_login(admin)
    for document in (doubling(), deep_yaml()):
        started = time.monotonic()
        response = client.post(
            API, {"document": document, "dry_run": True}, content_type="application/json"
        )
        assert response.status_code == 202, response.content[:300]
        assert time.monotonic() - started < 5  # the web request only stores it (was 31-45 s)
        job = OpenAPIImport.objects.latest("pk")
        openapi_import_run(job_id=job.pk)
        body = client.get(response.json()["url"]).json()
        assert body["status"] in (ImportStatus.READY, ImportStatus.FAILED)
        if body["status"] == ImportStatus.READY:  # the bomb: its operations refused
            problems = {d["key"]: d["problem"] for d in body["drafts"]}
            assert "too deeply" in problems["POST /deep"]
        else:  # the YAML: the document refused
            assert "nesting depth" in body["error"] or "nested more than" in body["error"]


@pytest.mark.django_db
@pytest.mark.usefixtures("crm")
def test_lone_surrogates_and_broken_bodies_are_refused_never_a_500(admin: User) -> None:
    client = Client()
    client.force_login(admin)
    spec = '{"openapi": "3.0.0", "info": {"title": "\\ud800", "version": "1"}, "paths": {}}'
    as_string = json.dumps({"document": "\ud800", "dry_run": True})
    as_object = '{"dry_run": true, "document": ' + spec + "}"
    for body in (as_string, as_object):  # the management API's JSON gate refuses both
        refused = client.post(API, body, content_type="application/json")
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "parse_error"
        assert "lone UTF-16 surrogate" in refused.json()["error"]["message"]
    # Sent as a string, the document's escape is text until the document is parsed:
    # the job fails and names where.
    started = client.post(
        API, json.dumps({"document": spec, "dry_run": True}), content_type="application/json"
    )
    assert started.status_code == 202
    openapi_import_run(job_id=OpenAPIImport.objects.latest("pk").pk)
    body = client.get(started.json()["url"]).json()
    assert body["status"] == "failed"
    assert body["error"] == "The document holds a lone UTF-16 surrogate (not text) at #/info/title."
    for raw in ("{", "[" * 100_000 + "]" * 100_000):
        broken = client.post(API, raw, content_type="application/json")
        assert broken.status_code == 400
        assert broken.json()["error"]["code"] == "parse_error"
        assert broken.json()["error"]["message"] == "The request body is not valid JSON."
