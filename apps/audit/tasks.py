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
