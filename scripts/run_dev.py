"""`make run`: the whole product on this machine, with nothing external to install.

1. Starts the embedded PostgreSQL (pgserver, data in var/pgdata; see
   scripts/embedded_postgres.py) and creates the `grantry` database if missing.
2. Writes the development environment to var/dev.env (DEBUG, dev keys, the
   DATABASE_URL of that server, ...), which manage.py and celery read when present.
3. Migrates, seeds the demo organization, then runs web, worker and beat. Without
   Redis, Celery uses kombu's filesystem transport and Django the file cache.

Ctrl-C stops every process within a few seconds: each child runs in its own
process group, gets SIGTERM, and whatever is left of its group after STOP_GRACE
seconds gets SIGKILL; PostgreSQL stops last.

`run_dev.py manage ARGS...` (`make manage`) runs one manage.py command against the
same database, starting the server for the command if `make run` is not running."""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make `scripts.` importable

from scripts.embedded_postgres import Embedded, start  # noqa: E402 - after the sys.path line

BIN = Path(sys.executable).parent
STOP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL for every child's process group
DEV_SECRETS = ("SECRET_KEY", "GRANTRY_ENCRYPTION_KEY")


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and not name.startswith("#"):
                values[name.strip()] = value.strip()
    return values


def dev_environment(var: Path, port: str, database_url: str) -> dict[str, str]:
    """The variables `make run` sets, written to var/dev.env for manage.py and celery.

    The dev keys are random per clone and kept across runs (the encryption key must
    stay the one the stored secrets were encrypted with)."""
    previous = read_env_file(var / "dev.env")
    values = {
        "DEBUG": "1",
        "DJANGO_SETTINGS_MODULE": "grantry.settings",
        "GRANTRY_VAR_DIR": str(var),
        "DATABASE_URL": database_url,
        "GRANTRY_BASE_URL": f"http://127.0.0.1:{port}",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "GRANTRY_SANDBOX_ENABLED": "1",
        "GRANTRY_EGRESS_ALLOW_LOOPBACK": "1",
        "ACCOUNT_EMAIL_VERIFICATION": "mandatory",
        # One host's processes add up their Prometheus figures here (emptied at start).
        "PROMETHEUS_MULTIPROC_DIR": str(var / "metrics"),
    }
    for name in DEV_SECRETS:
        values[name] = previous.get(name) or secrets.token_urlsafe(48)
    # What the caller's environment sets wins (e.g. another GRANTRY_BASE_URL).
    for name in values:
        if name != "GRANTRY_VAR_DIR" and os.environ.get(name):
            values[name] = os.environ[name]
    values["DATABASE_URL"] = database_url  # always the embedded server
    return values


def write_env_file(path: Path, values: dict[str, str]) -> None:
    body = "# Written by `make run` (scripts/run_dev.py). Development only: never deploy it.\n"
    body += "".join(f"{name}={value}\n" for name, value in values.items())
    path.touch(mode=0o600)
    path.write_text(body)


def prepare(port: str) -> tuple[Embedded, dict[str, str]]:
    var = Path(os.environ.get("GRANTRY_VAR_DIR") or ROOT / "var").resolve()
    for sub in (
        "celery-queue",
        "celery-processed",
        "celery-control",
        "cache",
        "media",
        "staticfiles",
    ):
        (var / sub).mkdir(parents=True, exist_ok=True)
    (var / "metrics").mkdir(exist_ok=True)
    embedded = start(var)
    values = dev_environment(var, port, embedded.url)
    write_env_file(var / "dev.env", values)
    env = {**os.environ, **values, "PYTHONUNBUFFERED": "1"}
    return embedded, env


def manage(env: dict[str, str], *args: str) -> int:
    return subprocess.run([str(BIN / "python"), "manage.py", *args], cwd=ROOT, env=env).returncode


def _own_group_and_die_with_parent() -> None:
    """In the child before exec: a process group of its own (so the terminal's Ctrl-C
    reaches only this script, which stops the children in order), and SIGTERM if this
    script dies without stopping them (Linux's PR_SET_PDEATHSIG)."""
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def web_command(port: str) -> list[str]:
    """The Procfile's `web` line (granian; WEB_CONCURRENCY / WEB_THREADS apply), bound
    to loopback: development serves exactly what production serves."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            command = line.split(":", 1)[1].strip()
            public = "--host 0.0.0.0 --port $PORT"
            command = command.replace(public, f"--host 127.0.0.1 --port {port}")
            return ["/bin/sh", "-c", f"PATH={BIN}:$PATH exec {command}"]
    raise SystemExit("Procfile has no web: line")


def commands(port: str) -> dict[str, list[str]]:
    celery = str(BIN / "celery")
    return {
        "web": web_command(port),
        "worker": [
            *(celery, "-A", "grantry", "worker", "--loglevel", "INFO"),
            *("--pool", "threads", "--concurrency", "4"),
        ],
        "beat": [celery, "-A", "grantry", "beat", "--loglevel", "INFO"],
    }


def stop_children(children: dict[str, subprocess.Popen[bytes]], hurry: list[bool]) -> None:
    """SIGTERM every group, wait up to STOP_GRACE (less if Ctrl-C comes again), then
    SIGKILL every group: that also reaches grandchildren (granian's worker processes)
    whose parent already exited. The Celery worker's warm shutdown on the filesystem
    transport takes ~5 s even when idle, so it is often the one killed (development
    only; a task cut short here runs again on the next schedule or click)."""
    for child in children.values():
        _signal_group(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline and not hurry[0]:
        if all(child.poll() is not None for child in children.values()):
            break
        time.sleep(0.1)
    late = [name for name, child in children.items() if child.poll() is None]
    if late:
        print(f"Killing {', '.join(late)} (no clean exit within {STOP_GRACE:.0f} s).", flush=True)
    for child in children.values():
        _signal_group(child.pid, signal.SIGKILL)
        child.wait()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone already
        os.killpg(pgid, signum)


def run(port: str) -> int:
    began = time.monotonic()
    embedded, env = prepare(port)
    # The last run's processes' Prometheus figures (not in prepare(): `make manage`
    # beside a running `make run` must leave them).
    for stale in Path(env["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()
    try:
        print(f"PostgreSQL ready in {time.monotonic() - began:.1f} s.", flush=True)
        # The first run's migrate and seed take half a minute: say what is happening.
        step = time.monotonic()
        print("Migrating the database (the first run takes about 30 s)…", flush=True)
        if manage(env, "migrate", "--noinput", "-v", "0"):
            return 1
        print(f"Migrated in {time.monotonic() - step:.1f} s.", flush=True)
        step = time.monotonic()
        print("Seeding the demo organization…", flush=True)
        if manage(env, "seed_demo"):
            return 1
        print(
            f"Seeded in {time.monotonic() - step:.1f} s "
            f"(ready {time.monotonic() - began:.1f} s after start).",
            flush=True,
        )
        return serve(port, env)
    finally:
        embedded.stop()


def serve(port: str, env: dict[str, str]) -> int:
    stopping = [False]
    hurry = [False]

    def on_signal(_signum: int, _frame: object) -> None:
        if stopping[0]:
            hurry[0] = True  # a second Ctrl-C: don't wait for graceful shutdown
        stopping[0] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    children = {
        name: subprocess.Popen(cmd, cwd=ROOT, env=env, preexec_fn=_own_group_and_die_with_parent)
        for name, cmd in commands(port).items()
    }
    print(
        "\n"
        f"  Grantry is running at {env['GRANTRY_BASE_URL']}/\n"
        "  Demo login: demo@grantry.local / grantry-demo-password (owner)\n"
        "              reviewer@grantry.local / grantry-demo-password (reviewer)\n"
        "  Emails (verification, invitations) are printed here.\n"
        "  manage.py commands: `make manage ARGS=...` (e.g. ARGS=audit_verify).\n"
        "  Press Ctrl-C to stop web, worker, scheduler and PostgreSQL.\n",
        flush=True,
    )
    code = 0
    while not stopping[0]:
        for name, child in children.items():
            if child.poll() is not None and not stopping[0]:
                print(f"{name} exited with {child.returncode}; stopping the rest.", flush=True)
                code, stopping[0] = child.returncode or 1, True
        time.sleep(0.2)
    began = time.monotonic()
    stop_children(children, hurry)
    print(f"Stopped web, worker and scheduler in {time.monotonic() - began:.1f} s.", flush=True)
    return code


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM before the children run: still stop PostgreSQL


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    port = os.environ.get("PORT", "8000")
    if argv[:1] == ["manage"]:
        embedded, env = prepare(port)
        try:
            return manage(env, *argv[1:])
        finally:
            embedded.stop()
    return run(port)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
