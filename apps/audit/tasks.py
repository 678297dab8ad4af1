"""Thin Celery tasks: take ids, call one service."""

from __future__ import annotations

from celery import shared_task

from apps.audit.services import audit_export_expire, audit_export_run


@shared_task(name="audit.run_export", acks_late=True, time_limit=3600, soft_time_limit=3500)
def run_audit_export(export_id: int) -> str:
    return audit_export_run(export_id=export_id).status


@shared_task(name="audit.expire_exports", time_limit=300, soft_time_limit=240)
def expire_audit_exports() -> int:
    return audit_export_expire()


@shared_task(name="audit.archive_due", acks_late=True, time_limit=6 * 3600, soft_time_limit=21000)
def archive_due() -> dict[str, object]:
    """Beat: months ahead, archives of what is past its retention, months dropped.
    Progress is on each AuditArchive row (rows_done of rows_total)."""
    from apps.audit.services import audit_archive_due

    return audit_archive_due()


@shared_task(name="audit.deliver_sink", time_limit=600, soft_time_limit=540)
def deliver_audit_sink(sink_id: int) -> str:
    from apps.audit.services import audit_sink_deliver

    sink = audit_sink_deliver(sink_id=sink_id)
    return "" if sink is None else sink.status


@shared_task(name="audit.deliver_sinks", time_limit=60, soft_time_limit=50)
def deliver_audit_sinks() -> int:
    """Beat: one delivery task per active sink whose backoff has passed."""
    from django.db.models import Q
    from django.utils import timezone

    from apps.audit.models import AuditSink, SinkStatus

    due = AuditSink.objects.filter(status=SinkStatus.ACTIVE).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now())
    )
    ids = list(due.values_list("pk", flat=True))
    for sink_id in ids:
        deliver_audit_sink.delay(sink_id)
    return len(ids)
