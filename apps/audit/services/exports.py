"""Exports of the trail. Reviewers export the current filter; every export, direct or
as a job, is itself an audit event ("audit.exported") naming who, which filter, which
format. A job is queued after its transaction commits and runs `audit_export_run`
(the `audit.run_export` task)."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.audit.exports import export_stream
from apps.audit.models import AuditEvent, AuditExport, ExportStatus
from apps.audit.writer import audit_record
from apps.core.tasks import enqueue

PROGRESS_EVERY = 5000


def export_threshold() -> int:
    return int(getattr(settings, "GRANTRY_AUDIT_EXPORT_ASYNC_THRESHOLD", 100_000))


def export_is_large(events: QuerySet[AuditEvent]) -> bool:
    """More rows than the threshold? Bounded: never counts past threshold + 1."""
    limit = export_threshold()
    return events.order_by().values("id")[limit : limit + 1].exists()


@transaction.atomic
def audit_export_direct(
    *,
    organization: Any,
    actor: Any,
    events: QuerySet[AuditEvent],
    params: dict[str, str],
    fmt: str,
    surface: str = "dashboard",
    proof: bool = False,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Iterator[str]:
    """Record the export, then return the lazy encoded stream of `events`.

    With `proof`, the stream is instead the contiguous slice of the organization's
    chains between `start` and `end`, with links and a signed checkpoint
    (apps.audit.proof; `params` must then hold only start/end)."""
    from apps.audit.proof import check_proof_filter, proof_stream
    from apps.audit.signing import signing_key

    if proof:
        check_proof_filter(params)
        signing_key(organization)  # created (and audited) now, not mid-stream
    audit_record(
        action="audit.exported",
        organization=organization,
        actor=actor,
        target_type="audit_filter",
        target_label=_filter_label(params),
        metadata={
            "filter": params,
            "format": fmt,
            "mode": "direct",
            "surface": surface,
            "proof": proof,
        },
    )
    if proof:
        return proof_stream(fmt, organization, start=start, end=end)
    return export_stream(fmt, events)


@transaction.atomic
def audit_export_request(
    *,
    organization: Any,
    actor: Any,
    params: dict[str, str],
    fmt: str,
    proof: bool = False,
) -> AuditExport:
    """Queue a large export as a Celery job (enqueued after commit)."""
    if proof:
        from apps.audit.proof import check_proof_filter
        from apps.audit.signing import signing_key

        check_proof_filter(params)
        signing_key(organization)
    export = AuditExport.objects.create(
        organization=organization, requested_by=actor, filter=params, format=fmt, proof=proof
    )
    audit_record(
        action="audit.exported",
        organization=organization,
        actor=actor,
        target=export,
        target_label=_filter_label(params),
        metadata={
            "filter": params,
            "format": fmt,
            "mode": "job",
            "export_id": export.pk,
            "proof": proof,
        },
    )
    transaction.on_commit(lambda: _export_enqueue(export))
    return export


def _export_enqueue(export: AuditExport) -> None:
    """Queue the export's job. When the task queue is down the export is marked failed,
    saying why, and the error goes on (503 broker_unavailable): never a job that looks
    queued but never runs."""
    try:
        enqueue("audit.run_export", export.pk)
    except Exception:
        AuditExport.objects.filter(pk=export.pk, status=ExportStatus.PENDING).update(
            status=ExportStatus.FAILED,
            error="The task queue was not available; request the export again.",
        )
        raise


def audit_export_run(*, export_id: int) -> AuditExport:
    """Write the export file. Not one transaction: progress must be visible while it
    runs. Safe to run twice: a finished or expired export is left alone."""
    from apps.audit.filters import AuditFilterForm

    with transaction.atomic():
        export = (
            AuditExport.objects.select_for_update().select_related("organization").get(pk=export_id)
        )
        if export.status not in (ExportStatus.PENDING, ExportStatus.RUNNING):
            return export
        form = AuditFilterForm(data=export.filter, organization=export.organization)
        if not form.is_valid():
            export.status, export.error = ExportStatus.FAILED, "The stored filter is invalid."
            export.finished_at = timezone.now()
            export.save(update_fields=["status", "error", "finished_at"])
            return export
        events = form.filter(AuditEvent.objects.for_organization(export.organization))
        # A snapshot: events appended while the job runs belong to a later export.
        last = events.order_by("-id").values_list("id", flat=True).first() or 0
        events = events.filter(id__lte=last)
        export.status, export.rows_done = ExportStatus.RUNNING, 0
        export.rows_total = events.count()
        export.save(update_fields=["status", "rows_done", "rows_total"])

    def counted(source: Iterator[Any]) -> Iterator[Any]:
        done = reported = 0
        for item in source:
            # One row, or a chunk of rows built by the database (exports.CSVChunk).
            done += getattr(item, "rows", 1)
            if done - reported >= PROGRESS_EVERY:
                AuditExport.objects.filter(pk=export.pk).update(rows_done=done)
                reported = done
            yield item
        AuditExport.objects.filter(pk=export.pk).update(rows_done=done)

    name = f"audit-exports/{export.organization_id}/{uuid.uuid4().hex}.{export.format}"
    if export.proof:
        from apps.audit.proof import proof_stream

        data = form.cleaned_data
        stream = proof_stream(
            export.format, export.organization, start=data.get("start"), end=data.get("end")
        )
    else:
        stream = export_stream(export.format, events, progress=counted)
    try:
        with tempfile.TemporaryFile(mode="w+b") as spool:
            for piece in stream:
                spool.write(piece.encode())
            spool.seek(0)
            stored = default_storage.save(name, File(spool))
    except Exception as exc:
        AuditExport.objects.filter(pk=export.pk).update(
            status=ExportStatus.FAILED, error=type(exc).__name__, finished_at=timezone.now()
        )
        raise
    now = timezone.now()
    if export.proof:  # the slice is cut by seq, so count what the time filter promised
        AuditExport.objects.filter(pk=export.pk).update(rows_done=export.rows_total)
    AuditExport.objects.filter(pk=export.pk).update(
        status=ExportStatus.DONE,
        file_path=stored,
        finished_at=now,
        expires_at=now + timedelta(hours=export_ttl_hours()),
    )
    export.refresh_from_db()
    return export


def export_ttl_hours() -> int:
    return int(getattr(settings, "GRANTRY_AUDIT_EXPORT_TTL_HOURS", 24))


@transaction.atomic
def audit_export_expire(*, now: datetime | None = None) -> int:
    """Delete the files of finished exports past their expiry; keep the rows as history."""
    now = now or timezone.now()
    expired = list(AuditExport.objects.expired(now=now).select_for_update(skip_locked=True))
    for export in expired:
        path = export.file_path
        if path:
            transaction.on_commit(partial(default_storage.delete, path))
        export.status, export.file_path = ExportStatus.EXPIRED, ""
        export.save(update_fields=["status", "file_path"])
    return len(expired)


def _filter_label(params: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(params.items()))[:300] or "(no filter)"
