"""Audit export jobs through the management API: create, poll, download. The job
itself runs the same service the Celery task runs (audit_export_run)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from pytest_django.fixtures import Settings
from rest_framework.test import APIClient

from apps.accounts.services import personal_token_mint
from apps.audit.models import AuditEvent, AuditExport
from apps.audit.services import audit_export_run
from apps.audit.tests.helpers import broker_event
from apps.organizations.models import Organization

pytestmark = pytest.mark.django_db

BASE = "/api/v1/orgs/acme/audit/exports/"


@pytest.fixture(autouse=True)
def media(settings: Settings, tmp_path: Path) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }


def token_api(user: Any, org: Organization) -> APIClient:
    _t, raw = personal_token_mint(user=user, organization=org, name="siem")
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}")


def test_reviewer_creates_polls_and_downloads_a_job(org: Organization, reviewer: User) -> None:
    denied = [broker_event(org, decision="denied").pk for _ in range(3)]
    broker_event(org)  # allowed: outside the filter
    client = token_api(reviewer, org)
    created = client.post(
        BASE, {"format": "jsonl", "filter": {"decision": "denied"}}, format="json"
    )
    assert created.status_code == 201, created.content
    job = created.json()
    assert job["status"] == "pending"
    assert job["filter"] == {"decision": "denied"}
    assert job["download_url"] is None
    assert AuditEvent.objects.filter(action="audit.exported", target_id=str(job["id"])).exists()

    not_yet = client.get(f"{BASE}{job['id']}/download/")
    assert not_yet.status_code == 409
    assert not_yet.json()["error"]["code"] == "not_ready"

    audit_export_run(export_id=job["id"])  # what the Celery task does
    polled = client.get(f"{BASE}{job['id']}/").json()
    assert polled["status"] == "done"
    assert polled["percent"] == 100
    assert polled["rows_total"] == 3
    download = client.get(polled["download_url"])
    assert download.status_code == 200
    assert download["Content-Type"].startswith("application/x-ndjson")
    lines = download.getvalue().decode().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(denied)
    listing = client.get(BASE).json()["results"]
    assert [j["id"] for j in listing] == [job["id"]]


def test_bad_input_is_400_and_no_job_is_created(org: Organization, reviewer: User) -> None:
    client = token_api(reviewer, org)
    for body, field in [
        ({"format": "xlsx"}, "format"),
        ({"format": "csv", "filter": {"worker": "seven"}}, "filter.worker"),
        ({"format": "csv", "filter": {"colour": "red"}}, "filter"),
        ({}, "format"),
    ]:
        response = client.post(BASE, body, format="json")
        assert response.status_code == 400, body
        assert field in response.json()["error"]["details"]["fields"], body
    assert not AuditExport.objects.exists()
    assert not AuditEvent.objects.filter(action="audit.exported").exists()


def test_an_expired_file_is_gone(org: Organization, reviewer: User) -> None:
    job = token_api(reviewer, org).post(BASE, {"format": "csv"}, format="json").json()
    audit_export_run(export_id=job["id"])
    AuditExport.objects.filter(pk=job["id"]).update(expires_at=timezone.now() - timedelta(1))
    response = token_api(reviewer, org).get(f"{BASE}{job['id']}/download/")
    assert response.status_code == 410
    assert token_api(reviewer, org).get(f"{BASE}{job['id']}/").json()["download_url"] is None


@pytest.mark.usefixtures("org")
def test_member_is_too_low(member: User) -> None:
    client = APIClient()
    client.force_login(member)
    assert client.post(BASE, {"format": "csv"}, format="json").status_code == 403
    assert client.get(BASE).status_code == 403
    assert not AuditExport.objects.exists()


def test_another_orgs_job_is_404(
    org: Organization, reviewer: User, other_org: Organization, outsider: User
) -> None:
    theirs = token_api(outsider, other_org).post(
        "/api/v1/orgs/globex/audit/exports/", {"format": "csv"}, format="json"
    )
    assert theirs.status_code == 201
    export_id = theirs.json()["id"]
    audit_export_run(export_id=export_id)
    mine = token_api(reviewer, org)
    assert mine.get(f"{BASE}{export_id}/").status_code == 404
    assert mine.get(f"{BASE}{export_id}/download/").status_code == 404
    assert mine.get(BASE).json()["results"] == []
    foreign = token_api(outsider, other_org)
    assert foreign.get(f"{BASE}").status_code == 404


def test_a_job_with_proof_verifies_offline_and_refuses_other_filters(
    org: Organization, reviewer: User
) -> None:
    from django.core.files.storage import default_storage

    from apps.audit import offline
    from apps.audit.models import AuditSigningKeypair

    for _ in range(3):
        broker_event(org)
    client = token_api(reviewer, org)
    refused = client.post(
        BASE, {"format": "csv", "filter": {"decision": "denied"}, "proof": True}, format="json"
    )
    assert refused.status_code == 400
    assert "decision" in refused.json()["error"]["details"]["fields"]["filter"][0]
    created = client.post(BASE, {"format": "jsonl", "proof": True}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["proof"] is True
    done = audit_export_run(export_id=created.json()["id"])
    assert done.status == "done"
    assert done.proof
    key = AuditSigningKeypair.objects.get(organization=org)
    with default_storage.open(done.file_path, "rb") as handle:
        report = offline.verify_bytes(handle.read(), public_key=key.public_key)
    assert report.ok, report.lines()
    assert report.events >= 3
