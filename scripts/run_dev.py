"""`make run`: migrate, seed the demo org, then run web + worker + scheduler.

Embedded defaults: SQLite and kombu's filesystem broker, so nothing external
is needed. Ctrl-C stops every process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PORT = os.environ.get("PORT", "8000")

env = dict(os.environ)
env.setdefault("DEBUG", "1")
env.setdefault("DJANGO_SETTINGS_MODULE", "grantry.settings")
env.setdefault("GRANTRY_BASE_URL", f"http://127.0.0.1:{PORT}")
env.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
env.setdefault("GRANTRY_SANDBOX_ENABLED", "1")
env.setdefault("GRANTRY_EGRESS_ALLOW_LOOPBACK", "1")
env.setdefault("ACCOUNT_EMAIL_VERIFICATION", "mandatory")
env.setdefault("PYTHONUNBUFFERED", "1")
var = Path(env.setdefault("GRANTRY_VAR_DIR", str(ROOT / "var")))
for sub in ("celery-queue", "celery-processed", "cache", "media"):
    (var / sub).mkdir(parents=True, exist_ok=True)


def manage(*args: str) -> None:
    subprocess.run([str(BIN / "python"), "manage.py", *args], cwd=ROOT, env=env, check=True)


def main() -> int:
    manage("migrate", "--noinput", "-v", "0")
    manage("seed_demo")
    processes = {
        "web": [
            str(BIN / "gunicorn"),
            "grantry.wsgi",
            "--bind",
            f"127.0.0.1:{PORT}",
            "--workers",
            "2",
            "--threads",
            "8",
            "--worker-class",
            "gthread",
            "--access-logfile",
            "-",
            "--timeout",
            "60",
        ],
        "worker": [
            str(BIN / "celery"),
            "-A",
            "grantry",
            "worker",
            "--loglevel",
            "INFO",
            "--pool",
            "threads",
            "--concurrency",
            "4",
        ],
        "beat": [str(BIN / "celery"), "-A", "grantry", "beat", "--loglevel", "INFO"],
    }
    children = {name: subprocess.Popen(cmd, cwd=ROOT, env=env) for name, cmd in processes.items()}
    from_env = env.get("GRANTRY_BASE_URL")
    print(
        "\n"
        f"  Grantry is running at {from_env}/\n"
        "  Demo login: demo@grantry.local / grantry-demo-password (owner)\n"
        "              reviewer@grantry.local / grantry-demo-password (reviewer)\n"
        "  Emails (verification, invitations) are printed here.\n"
        "  Press Ctrl-C to stop web, worker and scheduler.\n",
        flush=True,
    )

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"{name} exited with {child.returncode}; stopping the rest.", flush=True)
                code, stopping = child.returncode or 1, True
        time.sleep(0.5)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    return code


if __name__ == "__main__":
    sys.exit(main())
