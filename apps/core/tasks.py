"""Queueing a task from a service, and the scheduler heartbeat.

`enqueue()` / `enqueue_on_commit()`: a service queues its app's Celery task by the
task's name, as the beat schedule names tasks, so a service never imports the tasks
module that imports the services (no services ↔ tasks import circle in any app).

The heartbeat: beat enqueues it, a worker runs it, /healthz shows its age. It proves
the whole background chain (scheduler → broker → worker) is alive, including `make
run`'s embedded filesystem broker."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from celery import current_app, shared_task
from django.core.cache import cache
from django.db import transaction


def registered_task(task_name: str) -> Any:
    """The task registered under `task_name`; celery's NotRegistered if none is. The
    apps' `tasks.py` modules are imported first if they are not yet (a web process
    imports them only when something asks, through celery's autodiscovery)."""
    tasks = current_app.tasks
    if task_name not in tasks:
        current_app.loader.import_default_modules()
    return tasks[task_name]


def enqueue(task_name: str, *args: Any) -> None:
    """Queue the registered task `task_name` now (its `delay()`). A name no task is
    registered under raises celery's NotRegistered here, in the caller, not on a
    worker."""
    registered_task(task_name).delay(*args)


def enqueue_on_commit(task_name: str, *args: Any, robust: bool = False) -> None:
    """`enqueue()` once the current transaction commits (at once outside one), so a
    worker never runs ahead of the rows it will read. `robust`: a task queue that is
    down is logged (Django's on_commit), never raised into the code that committed."""
    transaction.on_commit(partial(enqueue, task_name, *args), robust=robust)


HEARTBEAT_KEY = "grantry:scheduler-heartbeat"


@shared_task(name="core.heartbeat", ignore_result=True, time_limit=30, soft_time_limit=20)
def heartbeat() -> None:
    cache.set(HEARTBEAT_KEY, time.time(), timeout=None)


def heartbeat_age_seconds() -> float | None:
    try:
        last = cache.get(HEARTBEAT_KEY)
    except Exception:  # health reporting must not fail on a cache outage
        return None
    return None if last is None else round(time.time() - float(last), 1)
