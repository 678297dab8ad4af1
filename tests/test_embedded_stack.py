"""`make run`'s background stack really runs with no Redis: celery beat enqueues the
heartbeat on kombu's filesystem broker, a celery worker executes it, and the result
lands in the file cache that /healthz reads. kombu's control files stay under var/."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.core.cache.backends.filebased import FileBasedCache

from apps.core.tasks import HEARTBEAT_KEY

ROOT = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).parent / "celery")


def test_beat_and_worker_run_on_the_filesystem_broker(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CELERY_", "CACHE_", "DJANGO_", "GRANTRY_", "REDIS", "DATABASE"))
    }
    env.update(
        DEBUG="1",
        DJANGO_SETTINGS_MODULE="grantry.settings",
        GRANTRY_VAR_DIR=str(tmp_path),
        DATABASE_URL=os.environ["DATABASE_URL"],  # the run's PostgreSQL (never queried here)
        GRANTRY_HEARTBEAT_SECONDS="1",
    )
    for sub in ("celery-queue", "celery-processed", "celery-control", "cache"):
        (tmp_path / sub).mkdir()
    commands = [
        [
            CELERY,
            "-A",
            "grantry",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            "2",
            "--loglevel",
            "WARNING",
        ],
        [CELERY, "-A", "grantry", "beat", "--loglevel", "WARNING"],
    ]
    processes = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for cmd in commands
    ]
    cache = FileBasedCache(str(tmp_path / "cache"), {})
    try:
        deadline = time.monotonic() + 60
        beat = None
        while beat is None and time.monotonic() < deadline:
            assert all(p.poll() is None for p in processes), "worker or beat exited"
            beat = cache.get(HEARTBEAT_KEY)
            time.sleep(0.5)
        assert beat is not None, "no heartbeat ran within 60 s"
        assert time.time() - beat < 60
        # kombu's broadcast files live under the var directory, not in the working directory.
        assert list((tmp_path / "celery-control").glob("*.exchange"))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
