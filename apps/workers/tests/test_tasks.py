"""The daily expiry-warning task, run by a real Celery worker on the real broker."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core import mail

from apps.workers.models import Worker, WorkerToken
from apps.workers.services import token_mint


def test_beat_schedule_runs_the_warning_task_daily() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["workers-warn-expiring-tokens"]
    assert entry["task"] == "workers.warn_expiring_tokens"
    assert entry["schedule"] == 24 * 60 * 60


@pytest.mark.celery
@pytest.mark.usefixtures("celery_worker")
def test_expiry_warning_task_through_a_real_worker(
    worker: Worker, admin: User, owner: User
) -> None:
    from apps.workers.tasks import warn_expiring_tokens

    soon, _ = token_mint(worker=worker, expires_in_days=2)
    later, _ = token_mint(worker=worker, expires_in_days=60)
    warn_expiring_tokens.delay()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if WorkerToken.objects.get(pk=soon.pk).expiry_warned_at is not None:
            break
        time.sleep(0.3)
    assert WorkerToken.objects.get(pk=soon.pk).expiry_warned_at is not None
    assert WorkerToken.objects.get(pk=later.pk).expiry_warned_at is None
    deadline = time.monotonic() + 10
    while not mail.outbox and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(mail.outbox) == 1
    assert sorted(mail.outbox[0].to) == sorted([admin.email, owner.email])
    assert soon.public_id in mail.outbox[0].body
