import os
import sys
from pathlib import Path

from celery import Celery, signals

if Path(sys.argv[0]).name == "celery":  # the celery command, not the web or the tests
    from grantry.devenv import load_dev_env

    load_dev_env()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grantry.settings")

app = Celery("grantry")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.celeryd_init.connect
def _background_database_timeouts(**kwargs: object) -> None:
    """A worker's tasks may run longer than a web request: the background timeouts.

    celeryd_init comes from `celery worker` only, before the pool starts (prefork
    children inherit the switch), never from a worker embedded in another process
    (the test suite's), which must keep that process's own timeouts."""
    from apps.core.db import use_background_timeouts

    use_background_timeouts()


@signals.beat_init.connect
def _one_scheduler(**kwargs: object) -> None:
    """Exactly one beat runs; another stands by (grantry/scheduler_lock.py)."""
    from grantry.scheduler_lock import hold_scheduler_lock

    hold_scheduler_lock()


@signals.worker_process_init.connect
def _tracing(**kwargs: object) -> None:
    """Each worker process traces its tasks when the OTEL_* variables ask (after the
    fork: the SDK's exporter thread belongs to the process that uses it)."""
    from grantry.telemetry import setup_tracing

    setup_tracing("grantry-worker")


@signals.setup_logging.connect
def _django_logging(**kwargs: object) -> None:
    """Workers and beat log through Django's LOGGING, so their lines are escaped and
    their tracebacks indented like the web's (apps/core/safe_log.py), instead of
    through Celery's own formatter. Celery configures no logging of its own when this
    signal has a receiver."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
