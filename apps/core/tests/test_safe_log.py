"""Django's log lines cannot be forged: the configured handler escapes control
characters and indents tracebacks (apps/core/safe_log.py; issue 21, item 8). The
access log's half runs on a real server in tests/test_run_dev.py."""

from __future__ import annotations

import logging
import sys

from apps.core.safe_log import CONTINUATION


def _format(message: str, *args: object, exc_info: object = None) -> str:
    """A record formatted by the console handler settings.LOGGING configured."""
    handler = next(h for h in logging.getLogger("django").handlers if h.formatter is not None)
    record = logging.LogRecord(
        "apps.broker",
        logging.WARNING,
        __file__,
        1,
        message,
        args,
        exc_info,  # type: ignore[arg-type]
    )
    assert handler.filter(record)  # the request id
    return handler.format(record)


def test_a_logged_value_stays_on_its_line() -> None:
    hostile = "x\n2026-12-07 10:00:00,000 INFO django FORGED\r\x1b[31mred\x1b[0m\u2028\x85\x00"
    line = _format("refused %s", hostile)
    assert "\n" not in line
    assert "\r" not in line
    assert "\x1b" not in line
    assert "\u2028" not in line
    assert "\x85" not in line
    assert "\x00" not in line
    assert "x\\n2026-12-07 10:00:00,000 INFO django FORGED\\r\\x1b[31mred" in line
    assert "\\u2028\\x85\\x00" in line


def test_a_traceback_keeps_its_lines_but_none_can_pass_for_a_record() -> None:
    try:
        raise ValueError("bad input\n2026-12-07 10:00:00,000 INFO django FORGED\x1b]0;owned\x07")
    except ValueError:
        text = _format("failed", exc_info=sys.exc_info())
    head, *traceback = text.split("\n")
    assert head.endswith("failed")
    assert traceback[0] == CONTINUATION + "Traceback (most recent call last):"
    assert all(line.startswith(CONTINUATION) for line in traceback)
    assert "\x1b" not in text
    assert "\x07" not in text
    assert any("FORGED\\x1b]0;owned\\x07" in line for line in traceback)


def test_celery_logs_through_the_same_formatter() -> None:
    """A worker or beat sets its logging up the way `celery worker` does; a task's line
    comes out escaped, like the web's (a process of its own: this one keeps pytest's)."""
    import os
    import subprocess
    from pathlib import Path

    script = (
        "import django, logging; django.setup()\n"
        "from grantry.celery import app\n"
        "app.log.setup(loglevel='INFO')\n"
        "logging.getLogger('celery.app.trace').warning('task said %s', 'x\\nFORGED\\x1b[31m')\n"
    )
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run(  # fixed argv
        [sys.executable, "-c", script],
        cwd=root,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "grantry.settings_test"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    [line] = [line for line in result.stderr.splitlines() if "task said" in line]
    assert line.endswith("task said x\\nFORGED\\x1b[31m")
    assert "FORGED" not in result.stderr.replace(line, "")
