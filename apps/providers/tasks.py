"""Thin Celery tasks of the catalog: take ids, call one service."""

from __future__ import annotations

from celery import shared_task

from apps.providers.import_services import openapi_import_run, openapi_import_sweep
from apps.providers.openapi.document import time_limit

# The reading itself is bounded in its child process (GRANTRY_OPENAPI_TIME_LIMIT per phase,
# at most two phases, and saving); these limits only catch a task stuck outside it.
READING_TASK_LIMIT = 3 * time_limit() + 60


@shared_task(
    name="providers.run_openapi_import",
    acks_late=True,
    time_limit=READING_TASK_LIMIT,
    soft_time_limit=READING_TASK_LIMIT - 30,
)
def run_openapi_import(job_id: int) -> str:
    job = openapi_import_run(job_id=job_id)
    return "" if job is None else job.status


@shared_task(name="providers.sweep_openapi_imports", time_limit=300, soft_time_limit=240)
def sweep_openapi_imports() -> list[int]:
    return list(openapi_import_sweep())
