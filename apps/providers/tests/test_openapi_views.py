"""The OpenAPI import pages and API: a background job (admins only) that reads the
document, lets the admin choose operations, shows its progress, and saves all or none."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django.fixtures import Settings

from apps.audit.models import AuditEvent
from apps.broker.tests.upstream import RecordingUpstream, Reply
from apps.providers.import_services import openapi_import_run, openapi_import_sweep
from apps.providers.models import CustomProvider, ImportStatus, OpenAPIImport

pytestmark = pytest.mark.django_db
DATA = Path(__file__).parent / "openapi"
API = "/api/v1/orgs/acme/custom-providers/crm/openapi-import/"


def import_url(org_slug: str = "acme", slug: str = "crm") -> Any:
    return reverse("providers:custom_openapi_import", kwargs={"org_slug": org_slug, "slug": slug})


def job_url(job: OpenAPIImport) -> Any:
    return reverse(
        "providers:custom_openapi_import_job",
        kwargs={"org_slug": "acme", "slug": job.provider.slug, "pk": job.pk},
    )


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def run_last() -> OpenAPIImport:
    """What the Celery task does for the newest job (the task calls this same service)."""
    job = OpenAPIImport.objects.latest("pk")
    openapi_import_run(job_id=job.pk)
    job.refresh_from_db()
    return job


def _upload(client: Client, name: str) -> OpenAPIImport:
    upload = SimpleUploadedFile(name, (DATA / name).read_bytes(), "application/yaml")
    response = client.post(import_url(), {"document": upload})
    job = OpenAPIImport.objects.latest("pk")
    assert response.status_code == 302
    assert response["Location"] == job_url(job)
    assert job.status == ImportStatus.QUEUED
    return run_last()


def _review_fields(html: str) -> dict[str, str]:
    """What a browser would post back from the review form (checked boxes only)."""
    html = html[html.index('id="review-heading"') :]
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
    job = _upload(client, "train-travel-3.1.yaml")
    assert job.status == ImportStatus.READY  # 7 operations: all drafted at once
    page = client.get(job_url(job))
    html = page.content.decode()
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
    saved = client.post(job_url(job), fields)
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
    assert event.metadata["source"]["file"] == "train-travel-3.1.yaml"
    assert event.metadata["source"]["version"] == "OpenAPI 3.1.0"
    assert len(event.metadata["source"]["sha256"]) == 64
    job.refresh_from_db()
    assert (job.status, job.document) == (ImportStatus.IMPORTED, b"")
    # Saved once: posting the same review again saves nothing more.
    again = client.post(job_url(job), fields)
    assert again.status_code == 200
    assert "not ready to be saved" in unescape(again.content.decode())
    assert crm.actions.count() == 3


def test_an_invalid_edit_saves_nothing_and_shows_the_error(
    admin: User, crm: CustomProvider
) -> None:
    client = _client(admin)
    job = _upload(client, "petstore-swagger-2.0.json")
    fields = _review_fields(client.get(job_url(job)).content.decode())
    first = next(k for k, v in fields.items() if v == "GET /pet/{petId}").split("-")[1]
    fields[f"form-{first}-input_schema"] = '{"type": "object", "properties": {}}'
    page = client.post(job_url(job), fields)
    assert page.status_code == 200
    assert "Nothing was saved" in page.content.decode()
    assert "path placeholder must be a required property" in unescape(page.content.decode())
    assert list(crm.actions.values_list("name", flat=True)) == ["get_item"]


@pytest.mark.usefixtures("crm")
def test_a_broken_document_fails_its_job_with_the_reason_on_the_page(admin: User) -> None:
    spec = {"swagger": "2.0", "info": {"title": "x", "version": "1"}, "paths": {"/a": 5}}
    upload = SimpleUploadedFile("x.json", json.dumps(spec).encode())
    client = _client(admin)
    client.post(import_url(), {"document": upload})
    job = run_last()
    assert job.status == ImportStatus.FAILED
    page = unescape(client.get(job_url(job)).content.decode())
    assert "not valid OpenAPI: #/paths/~1a: 5 is not of type 'object'" in page


@pytest.mark.usefixtures("crm")
def test_import_from_a_url(admin: User) -> None:
    with RecordingUpstream() as server:
        server.reply = Reply(body=json.loads((DATA / "petstore-swagger-2.0.json").read_text()))
        _client(admin).post(import_url(), {"url": f"{server.url}/swagger.json"})
        job = run_last()
    assert job.status == ImportStatus.READY
    assert job.origin == {"url": f"{server.url}/swagger.json"}
    assert server.requests[0].path == "/swagger.json"
    assert len(job.sha256) == 64


@pytest.mark.usefixtures("crm")
def test_a_large_document_waits_for_a_choice_by_tag_method_or_search(
    admin: User, settings: Settings
) -> None:
    settings.GRANTRY_OPENAPI_MAX_OPERATIONS = 5
    client = _client(admin)
    job = _upload(client, "train-travel-3.1.yaml")
    assert job.status == ImportStatus.CHOOSING  # 7 importable > 5
    assert job.drafts == []
    page = client.get(job_url(job), {"tags": ["Bookings"]}).content.decode()
    assert re.search(r"<strong>4</strong> operations match", page)
    too_many = client.post(job_url(job), {"methods": ["GET", "POST", "DELETE"]})
    assert "at most 5 can be imported at once" in unescape(too_many.content.decode())
    chosen = client.post(job_url(job), {"tags": ["Bookings"], "search": "booking"})
    assert chosen.status_code == 302
    job.refresh_from_db()
    assert job.status == ImportStatus.RESOLVING
    assert job.progress_total == len(job.chosen)
    page = client.get(job_url(job)).content.decode()
    assert 'hx-trigger="every 2s"' in page
    assert "operations drafted" in page
    fragment = client.get(job_url(job), HTTP_HX_REQUEST="true")
    assert fragment.content.decode().lstrip().startswith('<div id="import-progress"')
    assert "HX-Refresh" not in fragment
    job = run_last()
    assert job.status == ImportStatus.READY
    assert {d["key"] for d in job.drafts} == set(job.chosen)
    assert all("booking" in k.lower() for k in job.chosen)
    assert (job.progress_done, job.progress_total) == (len(job.chosen), len(job.chosen))
    done = client.get(job_url(job), HTTP_HX_REQUEST="true")
    assert done["HX-Refresh"] == "true"  # the review is a whole page


@pytest.mark.usefixtures("crm")
def test_members_reviewers_and_outsiders_cannot_import(
    admin: User, member: User, reviewer: User, outsider: User
) -> None:
    _client(admin).post(
        import_url(),
        {
            "document": SimpleUploadedFile(
                "p.json", (DATA / "petstore-swagger-2.0.json").read_bytes()
            )
        },
    )
    job = OpenAPIImport.objects.get()
    for user in (member, reviewer):
        assert _client(user).get(import_url()).status_code == 403
        assert _client(user).get(job_url(job)).status_code == 403
        assert _client(user).post(API, {"url": "https://x.test"}).status_code == 403
    assert _client(outsider).get(import_url()).status_code == 404
    assert _client(outsider).get(job_url(job)).status_code == 404
    assert _client(outsider).get(f"{API}{job.pk}/").status_code == 404
    assert _client(outsider).post(API, {}, content_type="application/json").status_code == 404


def _poll(client: Client, url: str) -> dict[str, Any]:
    run_last()
    response = client.get(url)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def test_api_dry_run_then_import_with_an_edit(admin: User, crm: CustomProvider) -> None:
    client = _client(admin)
    document = (DATA / "petstore-expanded-3.0.yaml").read_text()
    dry = client.post(API, {"document": document, "dry_run": True}, content_type="application/json")
    assert dry.status_code == 202, dry.content
    assert dry["Location"] == dry.json()["url"]
    assert dry.json()["status"] == "queued"
    body = _poll(client, dry.json()["url"])
    assert (body["status"], body["version"]) == ("ready", "OpenAPI 3.0.0")
    assert body["found"] == {"operations": 4, "refused": {}}
    assert body["progress"] == {"done": 4, "total": 4, "percent": 100}
    assert [o["key"] for o in body["drafts"]] == [
        "GET /pets",
        "POST /pets",
        "GET /pets/{id}",
        "DELETE /pets/{id}",
    ]
    assert not crm.actions.filter(name="find_pets").exists()
    chosen = client.post(
        body["url"],
        {"operations": ["GET /pets", {"key": "DELETE /pets/{id}", "name": "remove_pet"}]},
        content_type="application/json",
    )
    assert chosen.status_code == 202, chosen.content
    done = _poll(client, body["url"])
    assert done["status"] == "imported", done
    assert done["created_actions"] == ["custom-crm.find_pets", "custom-crm.remove_pet"]
    assert crm.actions.get(name="remove_pet").action_class == "write"
    event = AuditEvent.objects.get(action="provider.custom_actions_imported")
    assert event.actor_id == str(admin.pk)


def test_api_one_shot_import_and_its_errors(admin: User, crm: CustomProvider) -> None:
    client = _client(admin)
    document = json.loads((DATA / "petstore-swagger-2.0.json").read_text())

    def start(payload: dict[str, Any]) -> dict[str, Any]:
        response = client.post(API, payload, content_type="application/json")
        assert response.status_code == 202, response.content
        return _poll(client, response.json()["url"])

    broken = start({"document": "openapi: [", "dry_run": True})
    assert broken["status"] == "failed"
    assert broken["error"] == (
        "This is neither JSON nor valid YAML (line 2, column 1): "
        "did not find expected node content."
    )
    unknown = start({"document": document, "operations": ["GET /nope"]})
    assert (unknown["status"], unknown["error"]) == (
        "failed",
        "No importable operation matches this choice.",
    )
    clash = start(
        {"document": document, "operations": [{"key": "GET /pet/{petId}", "name": "get_item"}]}
    )
    assert clash["status"] == "failed"
    assert clash["error_details"]["operation"] == "GET /pet/{petId}"
    assert "already has an action" in clash["error_details"]["errors"]["name"][0]
    assert list(crm.actions.values_list("name", flat=True)) == ["get_item"]
    for payload, code in [
        (
            {
                "document": document,
                "operations": [{"key": "GET /store/inventory", "method": "POST"}],
            },
            "invalid_operation",
        ),
        ({"document": document}, "invalid_input"),
        ({"document": document, "url": "https://x.test/o.json", "dry_run": True}, "invalid_input"),
        ({"document": document, "dry_run": True, "path_prefix": "v1"}, "invalid_input"),
    ]:
        response = client.post(API, payload, content_type="application/json")
        assert response.status_code == 400, (payload, response.content)
        assert response.json()["error"]["code"] == code
    ok = start({"document": document, "operations": ["GET /store/inventory"]})
    assert ok["created_actions"] == ["custom-crm.get_inventory"]


@pytest.mark.usefixtures("crm")
def test_api_accepts_documents_past_djangos_body_cap_and_answers_json_past_its_own(
    admin: User, settings: Settings
) -> None:
    """Over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) Django answered an HTML 400."""
    client = _client(admin)
    spec = json.loads((DATA / "petstore-swagger-2.0.json").read_text())
    spec["info"]["description"] = "x" * 3_000_000
    big = client.post(API, {"document": spec, "dry_run": True}, content_type="application/json")
    assert big.status_code == 202, big.content[:300]
    assert _poll(client, big.json()["url"])["status"] == "ready"
    settings.GRANTRY_OPENAPI_MAX_BYTES = 1_000_000
    for payload in ({"document": spec, "dry_run": True}, {"document": {"x": "y" * 2_200_000}}):
        refused = client.post(API, payload, content_type="application/json")
        assert refused.status_code == 413
        assert refused["Content-Type"] == "application/json"
        error = refused.json()["error"]
        assert error["code"] == "document_too_large"
        assert "at most 1000 kB can be imported" in error["message"]
    assert OpenAPIImport.objects.count() == 1


@pytest.mark.celery
@pytest.mark.usefixtures("celery_worker", "crm")
def test_a_real_worker_reads_the_document_in_the_background(admin: User) -> None:
    client = _client(admin)
    document = (DATA / "train-travel-3.1.yaml").read_text()
    started = client.post(
        API, {"document": document, "dry_run": True}, content_type="application/json"
    )
    assert started.status_code == 202
    deadline = time.monotonic() + 60
    body = started.json()
    while body["status"] in ("queued", "reading", "resolving"):
        assert time.monotonic() < deadline, body["status"]
        time.sleep(0.2)
        body = client.get(body["url"]).json()
    assert body["status"] == "ready", body
    assert len(body["drafts"]) == 7


@pytest.mark.usefixtures("crm")
def test_the_sweep_ends_a_job_whose_worker_was_lost_and_deletes_old_ones(admin: User) -> None:
    client = _client(admin)
    upload = SimpleUploadedFile("p.json", (DATA / "petstore-swagger-2.0.json").read_bytes())
    client.post(import_url(), {"document": upload})
    lost = OpenAPIImport.objects.get()
    fresh = OpenAPIImport.objects.create(
        organization=lost.organization, provider=lost.provider, status=ImportStatus.RESOLVING
    )
    OpenAPIImport.objects.filter(pk=lost.pk).update(
        status=ImportStatus.READING, updated_at=timezone.now() - timedelta(minutes=10)
    )
    assert openapi_import_sweep() == (1, 0)
    lost.refresh_from_db()
    assert lost.status == ImportStatus.FAILED
    assert "worker was lost" in lost.error
    fresh.refresh_from_db()
    assert fresh.status == ImportStatus.RESOLVING  # still within its time
    OpenAPIImport.objects.filter(pk=lost.pk).update(updated_at=timezone.now() - timedelta(days=2))
    assert openapi_import_sweep() == (0, 1)
    assert list(OpenAPIImport.objects.values_list("pk", flat=True)) == [fresh.pk]
