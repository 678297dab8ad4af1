"""Getting a document and reading it within bounds: fetch (through egress), the size
cap, and the isolated child process (`isolated.py`) that parses, validates and drafts
under a memory cap, a CPU cap and a wall-clock deadline."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 16_000_000
DEFAULT_MAX_OPERATIONS = 100
DEFAULT_TIME_LIMIT = 60  # seconds, wall clock and CPU, per reading
DEFAULT_MEMORY_MB = 1024


class OpenAPIImportError(ValueError):
    """The document cannot be imported; the message says why, for the admin."""


class DocumentTooLarge(OpenAPIImportError):
    pass


def max_bytes() -> int:
    return int(getattr(settings, "GRANTRY_OPENAPI_MAX_BYTES", DEFAULT_MAX_BYTES))


def max_operations() -> int:
    return int(getattr(settings, "GRANTRY_OPENAPI_MAX_OPERATIONS", DEFAULT_MAX_OPERATIONS))


def time_limit() -> int:
    return int(getattr(settings, "GRANTRY_OPENAPI_TIME_LIMIT", DEFAULT_TIME_LIMIT))


def memory_limit_mb() -> int:
    return int(getattr(settings, "GRANTRY_OPENAPI_MEMORY_MB", DEFAULT_MEMORY_MB))


def too_large(size: int) -> DocumentTooLarge:
    return DocumentTooLarge(
        f"The document is {size // 1000} kB; at most {max_bytes() // 1000} kB can be imported."
    )


def check_size(raw: bytes) -> None:
    if len(raw) > max_bytes():
        raise too_large(len(raw))


# --- loading -------------------------------------------------------------------------


def fetch_document(url: str) -> bytes:
    """GET a document through the egress guard (public addresses only, no redirects,
    bounded time and size)."""
    from apps.core.egress import EgressError, egress_request
    from apps.providers.models import validate_provider_url

    try:
        validate_provider_url(url)
    except Exception as exc:  # a ValidationError with the reason
        message = " ".join(getattr(exc, "messages", [str(exc)]))
        raise OpenAPIImportError(f"This URL cannot be fetched: {message}") from None
    try:
        response = egress_request(
            "GET",
            url,
            headers={"Accept": "application/json, application/yaml, text/yaml, */*;q=0.5"},
            max_bytes=max_bytes() + 1,
        )
    except EgressError as exc:
        raise OpenAPIImportError(f"The document could not be fetched: {exc}") from None
    if response.status_code != 200:
        raise OpenAPIImportError(
            f"The server answered HTTP {response.status_code}"
            + (" (a redirect: give the final URL)." if 300 <= response.status_code < 400 else ".")
        )
    content = bytes(response.content)
    check_size(content)
    return content


def decode(raw: bytes) -> str:
    check_size(raw)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise OpenAPIImportError("The document is not UTF-8 text.") from None


# --- the isolated reader ------------------------------------------------------------------


def read_index(raw: bytes) -> dict[str, Any]:
    """The document's title, version, server and operations (not resolved)."""
    result: dict[str, Any] = _isolated({"phase": "index", "document": decode(raw)})
    return result


def read_drafts(
    raw: bytes, keys: list[str], on_progress: Callable[[int, int], None] | None = None
) -> list[dict[str, Any]]:
    """Drafts of the operations `keys`, their references resolved for them alone."""
    result = _isolated(
        {"phase": "drafts", "document": decode(raw), "keys": keys}, on_progress=on_progress
    )
    drafts: list[dict[str, Any]] = result["drafts"]
    return drafts


def _isolated(
    request: dict[str, Any], on_progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Run one reading in the child process; its answer, or OpenAPIImportError."""
    limit, memory_mb = time_limit(), memory_limit_mb()
    command = [
        sys.executable,
        "-m",
        "apps.providers.openapi.isolated",
        "--memory",
        str(memory_mb * 1024 * 1024),
        "--cpu",
        str(limit),
    ]
    started = time.monotonic()
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(  # noqa: S603 - our own module, no shell, no user argument
            command,
            cwd=Path(__file__).resolve().parents[3],
            # No environment: the child needs none, and holds no secret of ours.
            env={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            child.kill()

        timer = threading.Timer(limit, kill)
        timer.start()
        try:
            answer = _converse(child, request, on_progress)
        finally:
            timer.cancel()
            if child.poll() is None:
                child.kill()
            child.wait()
        errors.seek(0)
        stderr = errors.read(4000).decode(errors="replace")
    if answer is not None and "result" in answer:
        result: dict[str, Any] = answer["result"]
        return result
    if answer is not None and answer.get("error") not in (None, "memory"):
        raise OpenAPIImportError(str(answer["error"]))
    elapsed = time.monotonic() - started
    logger.warning(
        "OpenAPI reader stopped: exit %s after %.1f s%s",
        child.returncode,
        elapsed,
        f"\n{stderr}" if stderr else "",
    )
    if expired.is_set():
        raise OpenAPIImportError(
            f"Reading the document took longer than {limit} s and was stopped. Choose fewer "
            "operations, or simplify the document."
        )
    if child.returncode in (-signal.SIGKILL, -signal.SIGXCPU):  # the CPU cap
        raise OpenAPIImportError(
            f"Reading the document needed more than {limit} s of CPU time and was stopped."
        )
    if answer is not None or "MemoryError" in stderr:
        raise OpenAPIImportError(
            f"Reading the document needed more than {memory_mb} MB of memory and was stopped."
        )
    raise OpenAPIImportError("The document could not be read (the reader stopped).")


def _converse(
    child: subprocess.Popen[bytes],
    request: dict[str, Any],
    on_progress: Callable[[int, int], None] | None,
) -> dict[str, Any] | None:
    """Send the request; pass progress on; the final message (None if it died first)."""
    if child.stdin is None or child.stdout is None:
        raise RuntimeError("The reader's pipes are missing.")
    try:
        child.stdin.write(json.dumps(request).encode())
        child.stdin.close()
    except BrokenPipeError:
        pass  # it died at once; its exit status says why
    answer: dict[str, Any] | None = None
    for line in child.stdout:
        message = json.loads(line)
        if "progress" not in message:
            answer = message
        elif on_progress is not None:
            on_progress(*message["progress"])
    return answer
