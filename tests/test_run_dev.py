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
import threading
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
    # Progress during the half minute of migrate and seed, in order (issue 27, #10).
    steps = ("PostgreSQL ready in", "Migrating the database", "Migrated in", "Seeding the demo")
    at = [output.find(step) for step in steps]
    assert -1 not in at, output[:3000]
    assert at == sorted(at), output[:3000]
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


def test_a_dead_web_worker_is_replaced_under_load(tmp_path: Path) -> None:
    """kill -9 of one granian worker while clients call: the server keeps serving and
    a new worker takes the dead one's place (issue 21: granian used to shut down)."""
    from scripts.run_dev import web_command

    port = _free_port()
    log = tmp_path / "web.log"
    env = {**os.environ, "WEB_CONCURRENCY": "2", "WEB_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(  # fixed argv
        web_command(str(port)),
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/healthz?checks=0"
    stop = threading.Event()
    answers: list[tuple[float, int]] = []

    def load() -> None:
        while not stop.is_set():
            try:
                # A new connection each time: the listening socket decides who serves it.
                status = httpx.get(url, timeout=5, headers={"Connection": "close"}).status_code
            except httpx.TransportError:
                status = 0
            answers.append((time.monotonic(), status))

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        _wait_until_up(url, process, log, seconds=60)
        granian = psutil.Process(process.pid)  # `sh -c exec granian …` is granian itself
        before = granian.children()
        assert len(before) == 2, before
        for thread in threads:
            thread.start()
        time.sleep(1)
        victim = before[0]
        victim.kill()
        killed_at = time.monotonic()
        time.sleep(8)  # granian's respawn interval is 3.5 s
        stop.set()
        for thread in threads:
            thread.join()
        assert process.poll() is None, log.read_text()[-3000:]
        after = granian.children()
    finally:
        stop.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert len(after) == 2, (after, log.read_text()[-3000:])
    assert victim.pid not in {w.pid for w in after}
    served_after = [status for at, status in answers if at > killed_at + 0.5]
    assert served_after.count(200) > 50, log.read_text()[-3000:]
    # At most the requests the dead worker had in hand are lost.
    assert served_after.count(0) <= 4, served_after


def test_access_log_lines_cannot_be_forged(tmp_path: Path) -> None:
    """A percent-encoded newline or ESC in the path is escaped in the access log (and in
    Django's lines): one request, one line, no terminal escape sequence (issue 21)."""
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
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/healthz?checks=0", process, log, seconds=60)
        for target in (
            b"/nope%0AFORGED-LINE",
            b"/nope%0D%0A[2026-01-01%2000:00:00%20+0000]%2010.0.0.1%20FORGED-CRLF",
            b"/nope%1B[31mRED%1B[0m",
            b"/api/v1/x%E2%80%A8FORGED-LS%C2%85FORGED-NEL",
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                head = b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                sock.sendall(b"GET " + target + head)
                while sock.recv(65536):
                    pass
        time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log.read_bytes().decode("utf-8", "replace")
    lines = output.splitlines()  # splits on \r, \x85, \u2028 … too
    assert not [line for line in lines if "FORGED" in line and not line.startswith(("[", "20"))]
    assert '"GET /nope\\nFORGED-LINE HTTP/1.1" 404' in output, output
    assert "\\x1b[31mRED" in output
    assert "\x1b" not in output
    assert "\r" not in output
    assert "\u2028" not in output
    assert "\x85" not in output
    forged = [line for line in lines if "FORGED" in line]
    assert len(forged) == 6, forged  # three requests: an access line and a Django line each
