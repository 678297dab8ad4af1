"""The development environment that `make run` writes to `<var>/dev.env`.

manage.py and the celery command read it, and only when it exists, so that
`.venv/bin/python manage.py ...` works on a developer's clone after `make run`
while a production host (no dev.env) still refuses to start without its keys.
Variables already set in the environment win over the file."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def dev_env_path() -> Path:
    return Path(os.environ.get("GRANTRY_VAR_DIR") or ROOT / "var") / "dev.env"


def load_dev_env() -> None:
    path = dev_env_path()
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() and not name.lstrip().startswith("#"):
            os.environ.setdefault(name.strip(), value.strip())
