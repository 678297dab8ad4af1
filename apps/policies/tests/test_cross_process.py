"""A rule change reaches every server process on its next request: another OS
process that cached a role's rules sees the change without restarting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from apps.policies.services import role_create, rule_add

ROOT = Path(settings.BASE_DIR)
SCRIPT = (
    "import sys, django; django.setup()\n"
    "from apps.policies.selectors import role_rules\n"
    "print(','.join(r.action_pattern for r in role_rules(int(sys.argv[1]))))\n"
)


def other_process_sees(role_id: int) -> str:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "grantry.settings_test",
        "DATABASE_URL": (
            f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{db['NAME']}"
        ),
    }
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-c", SCRIPT, str(role_id)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs a shared PostgreSQL")
def test_rule_change_is_seen_by_another_process(transactional_db, org):
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        pytest.skip("cross-process caching needs the shared Redis cache")
    role = role_create(
        organization=org,
        name="r",
        rules=[{"provider_key": "sandbox", "action_pattern": "sandbox.list_tasks"}],
    )
    assert other_process_sees(role.pk) == "sandbox.list_tasks"
    # That process cached the rules; a change must still reach it.
    rule_add(role=role, rule={"provider_key": "sandbox", "action_pattern": "sandbox.get_task"})
    assert other_process_sees(role.pk) == "sandbox.list_tasks,sandbox.get_task"
