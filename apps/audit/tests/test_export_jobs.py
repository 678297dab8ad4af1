"""Large exports as Celery jobs: progress, download, tenant checks, expiry, audit."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoCaptureOnCommitCallbacks
from pytest_django.fixtures import Settings

from apps.audit.models import AuditEvent, AuditExport, ExportStatus
from apps.audit.services import audit_export_expire, audit_export_request, audit_export_run
from apps.audit.services import exports as export_services
from apps.audit.tests.helpers import broker_event
from apps.organizations.models import Organization
from tests.factories import PASSWORD


@pytest.fixture(autouse=True)
def media(settings: Settings, tmp_path: Path) -> Any:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    settings.GRANTRY_AUDIT_EXPORT_ASYNC_THRESHOLD = 5
    return tmp_path / "media"


def url(org: Organization, name: Any, **kwargs: Any) -> Any:
    return reverse(name, kwargs={"org_slug": org.slug, **kwargs})


def login(client: Any, user: Any) -> None:
    assert client.login(username=user.username, password=PASSWORD)


@pytest.mark.celery
@pytest.mark.usefixtures("celery_worker")
def test_large_export_runs_as_a_job_and_offers_the_file(
    client: Client, org: Organization, reviewer: User
) -> None:
    ids = [broker_event(org, decision="denied").pk for _ in range(12)]
    broker_event(org)  # allowed: outside the filter
    login(client, reviewer)

    response = client.post(url(org, "audit:export") + "?decision=denied", {"format": "jsonl"})
    export = AuditExport.objects.get()
    assert response.status_code == 302
    assert response["Location"] == url(org, "audit:export_detail", pk=export.pk)
    assert export.filter == {"decision": "denied"}
    assert export.requested_by == reviewer

    deadline = time.monotonic() + 30
    while export.status not in (ExportStatus.DONE, ExportStatus.FAILED):
        assert time.monotonic() < deadline, f"export still {export.status}"
        time.sleep(0.2)
        export.refresh_from_db()
    assert export.status == ExportStatus.DONE
    assert (export.rows_done, export.rows_total) == (12, 12)
    assert export.expires_at > timezone.now()

    page = client.get(url(org, "audit:export_detail", pk=export.pk)).content.decode()
    assert "12 of 12 rows (100%)" in page
    assert "hx-trigger" not in page  # finished: polling stops
    download = client.get(url(org, "audit:export_download", pk=export.pk))
    assert download.status_code == 200
    lines = download.getvalue().decode().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ids

    audited = AuditEvent.objects.get(action="audit.exported")
    assert audited.metadata == {
        "filter": {"decision": "denied"},
        "format": "jsonl",
        "mode": "job",
        "export_id": export.pk,
        "proof": False,
    }
    assert audited.actor_id == str(reviewer.pk)


@pytest.mark.django_db
def test_pending_export_page_polls_and_htmx_gets_the_fragment(
    client: Client, org: Organization, reviewer: User
) -> None:
    export = audit_export_request(organization=org, actor=reviewer, params={}, fmt="csv")
    login(client, reviewer)
    page = client.get(url(org, "audit:export_detail", pk=export.pk)).content.decode()
    assert 'hx-trigger="every 2s"' in page
    assert "reload it" in page  # the no-JS path
    fragment = client.get(url(org, "audit:export_detail", pk=export.pk), HTTP_HX_REQUEST="true")
    body = fragment.content.decode()
    assert body.lstrip().startswith('<div id="export-progress"')
    assert "<html" not in body
    not_ready = client.get(url(org, "audit:export_download", pk=export.pk))
    assert not_ready.status_code == 404


@pytest.mark.django_db
def test_job_reports_progress_while_it_runs(
    org: Organization, reviewer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(9):
        broker_event(org)
    # Row by row (JSONL); CSV jobs count database-built chunks (test_csv_copy.py).
    export = audit_export_request(organization=org, actor=reviewer, params={}, fmt="jsonl")
    monkeypatch.setattr(export_services, "PROGRESS_EVERY", 2)
    seen: list[int] = []
    original = export_services.export_stream

    def watched(fmt: Any, events: Any, progress: Any = None) -> Any:
        def spy(source: Any) -> Iterator[Any]:
            for n, row in enumerate(progress(source), start=1):
                if n in (5, 9):
                    seen.append(AuditExport.objects.get(pk=export.pk).rows_done)
                yield row

        return original(fmt, events, progress=spy)

    monkeypatch.setattr(export_services, "export_stream", watched)
    done = audit_export_run(export_id=export.pk)
    assert seen == [4, 8]
    # 9 broker events + the export's own audit event (written when requested).
    assert (done.rows_done, done.rows_total, done.status) == (10, 10, ExportStatus.DONE)
    assert audit_export_run(export_id=export.pk).file_path == done.file_path  # runs once


@pytest.mark.django_db
def test_download_is_tenant_checked(
    client: Client,
    org: Organization,
    other_org: Organization,
    reviewer: User,
    member: User,
    outsider: User,
) -> None:
    export = AuditExport.objects.create(
        organization=org,
        requested_by=reviewer,
        format="csv",
        status=ExportStatus.DONE,
        file_path=default_storage.save("audit-exports/x.csv", ContentFile(b"id\r\n1\r\n")),
        expires_at=timezone.now() + timedelta(hours=1),
    )
    login(client, reviewer)
    assert client.get(url(org, "audit:export_download", pk=export.pk)).status_code == 200
    client.logout()
    login(client, member)
    assert client.get(url(org, "audit:export_download", pk=export.pk)).status_code == 403
    client.logout()
    login(client, outsider)
    assert client.get(url(org, "audit:export_download", pk=export.pk)).status_code == 404
    # Their own org's URL with our export id: not theirs, 404.
    assert client.get(url(other_org, "audit:export_download", pk=export.pk)).status_code == 404
    assert client.get(url(other_org, "audit:export_detail", pk=export.pk)).status_code == 404


@pytest.mark.django_db
def test_finished_exports_expire(
    client: Client,
    org: Organization,
    reviewer: User,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    path = default_storage.save("audit-exports/old.csv", ContentFile(b"id\r\n"))
    old = AuditExport.objects.create(
        organization=org,
        requested_by=reviewer,
        format="csv",
        status=ExportStatus.DONE,
        file_path=path,
        expires_at=timezone.now() - timedelta(minutes=1),
    )
    fresh_path = default_storage.save("audit-exports/new.csv", ContentFile(b"id\r\n"))
    fresh = AuditExport.objects.create(
        organization=org,
        requested_by=reviewer,
        format="csv",
        status=ExportStatus.DONE,
        file_path=fresh_path,
        expires_at=timezone.now() + timedelta(hours=1),
    )
    login(client, reviewer)
    # Past expiry the download is refused even before the cleanup ran.
    assert client.get(url(org, "audit:export_download", pk=old.pk)).status_code == 404

    with django_capture_on_commit_callbacks(execute=True):
        assert audit_export_expire() == 1
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert (old.status, old.file_path) == (ExportStatus.EXPIRED, "")
    assert not default_storage.exists(path)
    assert fresh.status == ExportStatus.DONE
    assert default_storage.exists(fresh_path)
    assert "expired" in client.get(url(org, "audit:export_detail", pk=old.pk)).content.decode()


def test_cleanup_is_scheduled() -> None:
    entry = django_settings.CELERY_BEAT_SCHEDULE["audit-expire-exports"]
    assert entry["task"] == "audit.expire_exports"
    from grantry.celery import app

    app.loader.import_default_modules()
    assert "audit.expire_exports" in app.tasks
    assert "audit.run_export" in app.tasks
