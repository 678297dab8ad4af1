"""LOG_FORMAT=json: every log line of Django's and Celery's processes, and granian's
(grantry/granian-logging-json.json), is one JSON object with the request id; a value
with a newline or an escape sequence stays inside its line."""

from __future__ import annotations

import json
import logging.config
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import logging
import django
django.setup()
from apps.core.audit_context import audit_context
with audit_context(request_id="req-1234"):
    logging.getLogger("apps.test").warning("forged\\nline \\x1b[31m %s", "value")
try:
    raise ValueError("boom")
except ValueError:
    logging.getLogger("apps.test").exception("failed")
"""


def test_json_log_lines_carry_the_request_id_and_stay_one_line() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "grantry.settings_test", "LOG_FORMAT": "json"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], cwd=ROOT, env=env, capture_output=True, check=True
    )
    lines = [line for line in done.stderr.decode().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    [warned] = [r for r in records if r["message"].startswith("forged")]
    assert warned["message"] == "forged\nline \x1b[31m value"
    assert warned["request_id"] == "req-1234"
    assert warned["level"] == "WARNING"
    assert warned["logger"] == "apps.test"
    [failed] = [r for r in records if r["message"] == "failed"]
    assert "ValueError: boom" in failed["exc_info"]


def test_an_unknown_log_format_stops_start_up_with_a_clear_message() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "grantry.settings_test", "LOG_FORMAT": "xml"}
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
    )
    assert done.returncode != 0
    assert "LOG_FORMAT must be 'plain' or 'json', not 'xml'." in done.stderr.decode()


def test_granians_json_config_loads() -> None:
    config = json.loads((ROOT / "grantry/granian-logging-json.json").read_text())
    logging.config.dictConfig(config)
    formatter = logging.getLogger("granian.access").handlers[0].formatter
    assert formatter is not None
    record = logging.LogRecord("granian.access", logging.INFO, "", 0, 'GET "/x"\n', None, None)
    assert json.loads(formatter.format(record))["message"] == 'GET "/x"\n'
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
