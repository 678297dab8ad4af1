"""Thin Celery tasks of the catalog: take ids, call one service."""

from __future__ import annotations

from celery import shared_task

from apps.providers.import_services import openapi_import_purge, openapi_import_run
from apps.providers.openapi.document import DEFAULT_TIME_LIMIT


# The reading itself is bounded in its child process (GRANTRY_OPENAPI_TIME_LIMIT per
# phase, two phases); these limits only catch a task that hangs outside it.
@shared_task(
    name="providers.run_openapi_import",
    acks_late=True,
    time_limit=4 * DEFAULT_TIME_LIMIT + 60,
    soft_time_limit=4 * DEFAULT_TIME_LIMIT,
)
def run_openapi_import(job_id: int) -> str:
    job = openapi_import_run(job_id=job_id)
    return "" if job is None else job.status


@shared_task(name="providers.purge_openapi_imports", time_limit=300, soft_time_limit=240)
def purge_openapi_imports() -> int:
    return openapi_import_purge()
