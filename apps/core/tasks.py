"""A scheduler heartbeat: beat enqueues it, a worker runs it, /healthz shows its age.

It proves the whole background chain (scheduler → broker → worker) is alive,
including `make run`'s embedded filesystem broker."""

from __future__ import annotations

import time

from celery import shared_task
from django.core.cache import cache

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
