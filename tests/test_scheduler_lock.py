"""Exactly one Celery beat (grantry/scheduler_lock.py): a second `celery beat` stands
by, takes over when the active one is killed, and an active one that loses its lock
exits instead of scheduling beside another. Real `celery beat` processes, real Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings

from grantry.scheduler_lock import lock_name

ROOT = Path(__file__).resolve().parent.parent
CELERY = ROOT / ".venv/bin/celery"

pytestmark = pytest.mark.skipif(
    not settings.REDIS_URL, reason="the scheduler lock needs Redis (CI always has it)"
)


def start_beat(tmp_path: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"{name}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "grantry.settings_test",
        "GRANTRY_BEAT_LOCK_SECONDS": "3",
    }
    process = subprocess.Popen(  # fixed argv
        [str(CELERY), "-A", "grantry", "beat", "--loglevel", "INFO", "-s", str(tmp_path / name)],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    return process, log


def wait_for(log: Path, text: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in {log.name} after {seconds} s:\n{log.read_text()}")


def test_one_scheduler_runs_another_stands_by_and_takes_over(tmp_path: Path) -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(lock_name())
    first, first_log = start_beat(tmp_path, "a")
    second = None
    try:
        wait_for(first_log, "holds", 60)
        assert ": scheduling" in first_log.read_text()
        second, second_log = start_beat(tmp_path, "b")
        wait_for(second_log, "standing by", 60)
        time.sleep(4)  # past one time-to-live: the first keeps renewing, the second waits
        assert ": scheduling" not in second_log.read_text()
        assert first.poll() is None

        first.send_signal(signal.SIGKILL)  # the active scheduler dies without a word
        first.wait()
        wait_for(second_log, ": scheduling", 15)

        # The lock vanishes under the active one (Redis restarted without persistence):
        # it stops rather than run beside a scheduler that may take the free lock.
        client.delete(lock_name())
        assert second.wait(timeout=15) == 3
        assert "the scheduler lock is lost" in second_log.read_text()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        client.delete(lock_name())
