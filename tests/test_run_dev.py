"""`make run` (scripts/run_dev.py) and the Procfile's web line, run for real.

- Ctrl-C stops everything: web (granian and its workers), worker, beat and the
  embedded PostgreSQL; the port is free again and no process survives.
- The web server's access log never carries a query string (a token put in one
  by mistake would sit in the log)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited early:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} never answered:\n{log.read_text()[-3000:]}")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _stop_postgres(pgdata: Path) -> None:
    """After a failed run: don't leave the test's PostgreSQL behind."""
    pid_file = pgdata / "postmaster.pid"
    if pid_file.exists():
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(int(pid_file.read_text().split()[0])).terminate()


def _clean_env(**extra: str) -> dict[str, str]:
    """The developer's shell, not the test run's settings."""
    prefixes = ("CELERY_", "CACHE_", "DJANGO_", "GRANTRY_", "REDIS", "DATABASE", "WEB_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return {**env, **extra}


@pytest.mark.slow
def test_ctrl_c_stops_web_worker_beat_and_postgres(tmp_path: Path) -> None:
    port = _free_port()
    var = tmp_path / "var"
    log = tmp_path / "run.log"
    env = _clean_env(PORT=str(port), GRANTRY_VAR_DIR=str(var), WEB_CONCURRENCY="2")
    # Its own session: the SIGINT below reaches it the way a terminal's Ctrl-C reaches
    # `make run` (the foreground process group), not the test run.
    process = subprocess.Popen(  # fixed argv
        [str(PYTHON), "scripts/run_dev.py"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # A bound, not a goal: a first start (initdb, migrate, seed) takes ~20 s on a
        # quiet machine, minutes on a busy one.
        _wait_until_up(f"http://127.0.0.1:{port}/healthz", process, log, seconds=300)
        children = psutil.Process(process.pid).children(recursive=True)
        names = " ".join(" ".join(child.cmdline()) for child in children)
        assert "granian" in names
        assert "worker" in names
        assert "beat" in names
        postmaster = int((var / "pgdata" / "postmaster.pid").read_text().split()[0])
        watched = [child.pid for child in children] + [postmaster]
        assert all(_alive(pid) for pid in watched)

        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            _stop_postgres(var / "pgdata")
    output = log.read_text()
    assert "Stopped web, worker and scheduler" in output, output[-3000:]
    survivors = [pid for pid in watched if _alive(pid)]
    assert survivors == [], f"still running: {survivors}\n{output[-3000:]}"
    assert _port_is_free(port)
    assert not (var / "pgdata" / "postmaster.pid").exists()  # PostgreSQL shut down cleanly
    assert "SECRET_KEY=" in (var / "dev.env").read_text()


def test_access_log_never_shows_query_strings(tmp_path: Path) -> None:
    """The Procfile's web line, as `make run` and production run it."""
    from scripts.run_dev import web_command

    port = _free_port()
    log = tmp_path / "web.log"
    env = {**os.environ, "WEB_CONCURRENCY": "1", "WEB_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(  # fixed argv
        web_command(str(port)),
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(f"{base}/healthz?checks=0", process, log, seconds=60)
        for path in (
            "/api/v1/whoami?access_token=gry_SECRET1",
            "/mcp?token=gry_SECRET2",
            "/healthz?checks=0&token=gry_SECRET3",
        ):
            httpx.get(base + path, timeout=10)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log.read_text()
    assert '"GET /api/v1/whoami HTTP/1.1"' in output, output
    assert '"GET /mcp HTTP/1.1"' in output, output
    assert '"GET /healthz HTTP/1.1" 200' in output, output
    assert "SECRET" not in output
