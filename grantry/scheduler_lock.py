"""Exactly one Celery beat in a deployment: a second one stands by.

`celery beat` enqueues every periodic task on schedule; two of them would enqueue each
twice. With Redis (every multi-node deployment), a beat process takes a Redis lock
(redis-py's `Lock`, with a time-to-live) before its scheduler starts, and renews it
while it runs. Another beat waits until the lock is free, so a standby takes over
within `GRANTRY_BEAT_LOCK_SECONDS` when the active one dies. If the active one loses
its lock (Redis restarted, or the process stalled past the time-to-live), it exits at
once rather than risk a second active scheduler; its supervisor restarts it as a
standby. Without Redis (`make run` on one machine) there is one beat by construction.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from django.conf import settings

logger = logging.getLogger("grantry.scheduler")


def lock_name() -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', 'grantry')}:celery-beat"


def hold_scheduler_lock() -> None:
    """Block until this process holds the scheduler lock, then keep it renewed."""
    if not settings.REDIS_URL:
        return
    import redis

    ttl = float(settings.GRANTRY_BEAT_LOCK_SECONDS)
    client = redis.Redis.from_url(settings.REDIS_URL)
    lock = client.lock(lock_name(), timeout=ttl, thread_local=False)
    announced = False
    while not lock.acquire(blocking=False):
        if not announced:
            logger.warning("another scheduler holds %s: standing by", lock_name())
            announced = True
        time.sleep(min(ttl / 3, 5.0))
    logger.warning("this process holds %s: scheduling", lock_name())

    def renew() -> None:
        while True:
            time.sleep(ttl / 3)
            try:
                lock.extend(ttl, replace_ttl=True)
            except Exception as exc:  # any failure means the lock may be gone
                logger.critical(
                    "the scheduler lock is lost (%s): exiting so that only one scheduler runs",
                    type(exc).__name__,
                )
                os._exit(3)

    threading.Thread(target=renew, name="scheduler-lock", daemon=True).start()
