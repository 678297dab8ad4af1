"""The OpenAPI import pages and API endpoint: admins only, choose and edit, all or none."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.broker.tests.upstream import RecordingUpstream, Reply
from apps.providers.models import CustomProvider

pytestmark = pytest.mark.django_db
DATA = Path(__file__).parent / "openapi"
API = "/api/v1/orgs/acme/custom-providers/crm/openapi-import/"


def import_url(org_slug: str = "acme", slug: str = "crm") -> Any:
    return reverse("providers:custom_openapi_import", kwargs={"org_slug": org_slug, "slug": slug})


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _review_fields(html: str) -> dict[str, str]:
    """What a browser would post back from the review page (checked boxes only)."""
    fields: dict[str, str] = {}
    for tag in re.findall(r"<input[^>]*>", html):
        name = re.search(r'name="([^"]+)"', tag)
        if not name:
            continue
        value = re.search(r'value="([^"]*)"', tag)
        if 'type="checkbox"' in tag:
            if "checked" in tag:
                fields[name.group(1)] = "on"
            continue
        fields[name.group(1)] = unescape(value.group(1)) if value else ""
    for name, value in re.findall(
        r'<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', html, re.S
    ):
        fields[name] = unescape(value).lstrip("\n")
    for name, body in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', html, re.S):
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', body)
        fields[name] = chosen.group(1) if chosen else ""
    return fields


def test_upload_review_edit_and_save(admin: User, crm: CustomProvider) -> None:
    client = _client(admin)
    assert client.get(import_url()).status_code == 200
    upload = SimpleUploadedFile(
        "train.yaml", (DATA / "train-travel-3.1.yaml").read_bytes(), "application/yaml"
    )
    review = client.post(import_url(), {"document": upload})
    html = review.content.decode()
    assert review.status_code == 200
    assert "Choose the operations to import" in html
    # Works under a strict CSP: no inline script, no event-handler attributes.
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert not re.search(r"\son[a-z]+=", html)
    assert "Not importable as it is: It needs the header parameter" in html
    fields = _review_fields(html)
    keys = {k: v for k, v in fields.items() if k.endswith("-key")}
    index = {v: k.split("-")[1] for k, v in keys.items()}
    # Choose two operations, rename one and tighten its description.
    for i in index.values():
        fields.pop(f"form-{i}-selected", None)
    get_i, post_i = index["GET /bookings/{bookingId}"], index["POST /bookings"]
    fields[f"form-{get_i}-selected"] = "on"
    fields[f"form-{post_i}-selected"] = "on"
    fields[f"form-{post_i}-name"] = "hold_trip"
    fields[f"form-{post_i}-description"] = "Hold a seat on a trip for a passenger."
    saved = client.post(import_url(), fields)
    assert saved.status_code == 302, saved.content.decode()[:3000]
    assert sorted(crm.actions.values_list("name", flat=True)) == [
        "get_booking",
        "get_item",
        "hold_trip",
    ]
    hold = crm.actions.get(name="hold_trip")
    assert (hold.method, hold.path, hold.action_class) == ("POST", "/bookings", "write")
    assert hold.description == "Hold a seat on a trip for a passenger."
    assert hold.query_params == ["dry_run"]
    assert hold.scopes == ["write"]
    event = AuditEvent.objects.get(action="provider.custom_actions_imported")
    assert event.metadata["source"]["file"] == "train.yaml"
    assert event.metadata["source"]["version"] == "OpenAPI 3.1.0"
    assert len(event.metadata["source"]["sha256"]) == 64


def test_an_invalid_edit_saves_nothing_and_shows_the_error(
    admin: User, crm: CustomProvider
) -> None:
    client = _client(admin)
    upload = SimpleUploadedFile("pets.json", (DATA / "petstore-swagger-2.0.json").read_bytes())
    fields = _review_fields(client.post(import_url(), {"document": upload}).content.decode())
    first = next(k for k, v in fields.items() if v == "GET /pet/{petId}").split("-")[1]
    fields[f"form-{first}-input_schema"] = '{"type": "object", "properties": {}}'
    page = client.post(import_url(), fields)
    assert page.status_code == 200
    assert "Nothing was saved" in page.content.decode()
    assert "path placeholder must be a required property" in unescape(page.content.decode())
    assert list(crm.actions.values_list("name", flat=True)) == ["get_item"]


def test_a_forged_source_is_refused(admin: User, crm: CustomProvider) -> None:
    client = _client(admin)
    upload = SimpleUploadedFile("pets.json", (DATA / "petstore-swagger-2.0.json").read_bytes())
    fields = _review_fields(client.post(import_url(), {"document": upload}).content.decode())
    fields["source"] = fields["source"][:-3] + "xyz"
    response = client.post(import_url(), fields)
    assert response.status_code == 302
    assert list(crm.actions.values_list("name", flat=True)) == ["get_item"]


@pytest.mark.usefixtures("crm")
def test_a_document_with_an_outside_reference_is_refused_on_the_page(admin: User) -> None:
    spec = {
        "swagger": "2.0",
        "info": {"title": "x", "version": "1"},
        "paths": {"/a": {"get": {"parameters": [{"$ref": "https://evil.example/p.json"}]}}},
    }
    upload = SimpleUploadedFile("x.json", json.dumps(spec).encode())
    page = _client(admin).post(import_url(), {"document": upload})
    assert page.status_code == 200
    assert "points outside the document" in unescape(page.content.decode())


@pytest.mark.usefixtures("crm")
def test_import_from_a_url(admin: User) -> None:
    with RecordingUpstream() as server:
        server.reply = Reply(body=json.loads((DATA / "petstore-swagger-2.0.json").read_text()))
        page = _client(admin).post(import_url(), {"url": f"{server.url}/swagger.json"})
    assert "Choose the operations to import" in page.content.decode()
    assert server.requests[0].path == "/swagger.json"


@pytest.mark.usefixtures("crm")
def test_members_and_reviewers_cannot_import(member: User, reviewer: User, outsider: User) -> None:
    for user in (member, reviewer):
        assert _client(user).get(import_url()).status_code == 403
        assert _client(user).post(API, {"url": "https://x.test"}).status_code == 403
    assert _client(outsider).get(import_url()).status_code == 404
    assert _client(outsider).post(API, {}, content_type="application/json").status_code == 404


def test_api_dry_run_then_import_with_an_edit(admin: User, crm: CustomProvider) -> None:
    client = _client(admin)
    document = (DATA / "petstore-expanded-3.0.yaml").read_text()
    dry = client.post(API, {"document": document, "dry_run": True}, content_type="application/json")
    assert dry.status_code == 200, dry.content
    body = dry.json()
    assert body["version"] == "OpenAPI 3.0.0"
    assert [o["key"] for o in body["operations"]] == [
        "GET /pets",
        "POST /pets",
        "GET /pets/{id}",
        "DELETE /pets/{id}",
    ]
    assert not crm.actions.filter(name="find_pets").exists()
    done = client.post(
        API,
        {
            "document": document,
            "operations": ["GET /pets", {"key": "DELETE /pets/{id}", "name": "remove_pet"}],
        },
        content_type="application/json",
    )
    assert done.status_code == 201, done.content
    assert done.json()["created"] == ["custom-crm.find_pets", "custom-crm.remove_pet"]
    assert crm.actions.get(name="remove_pet").action_class == "write"


def test_api_errors_use_the_standard_shape(admin: User, crm: CustomProvider) -> None:
    client = _client(admin)
    document = json.loads((DATA / "petstore-swagger-2.0.json").read_text())
    cases = [
        ({"document": "openapi: [", "dry_run": True}, "invalid_document"),
        ({"document": document, "operations": ["GET /nope"]}, "unknown_operation"),
        ({"document": document, "operations": ["POST /pet/{petId}"]}, "invalid_action"),
        (
            {
                "document": document,
                "operations": [{"key": "GET /store/inventory", "method": "POST"}],
            },
            "invalid_operation",
        ),
        ({"document": document}, None),
    ]
    for payload, code in cases:
        response = client.post(API, payload, content_type="application/json")
        assert response.status_code == 400, (payload, response.content)
        error = response.json()["error"]
        if code:
            assert error["code"] == code, error
    assert list(crm.actions.values_list("name", flat=True)) == ["get_item"]
