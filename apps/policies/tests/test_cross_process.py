"""A rule change reaches every server process on its next request: another,
long-lived OS process that holds a role's rules in memory sees the change
without restarting (the rules version is read from the database)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from apps.organizations.models import Organization
from apps.policies.services import role_create, rule_add
from tests.backends import database_url

ROOT = Path(settings.BASE_DIR)
SCRIPT = (
    "import sys, django; django.setup()\n"
    "from apps.policies.selectors import role_rules\n"
    "for line in sys.stdin:\n"
    "    print(','.join(r.action_pattern for r in role_rules(int(sys.argv[1]))), flush=True)\n"
)


def other_process(role_id: int) -> subprocess.Popen[str]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "grantry.settings_test",
        "DATABASE_URL": database_url(db),
    }
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(role_id)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def ask(process: subprocess.Popen[str]) -> str:
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write("rules?\n")
    process.stdin.flush()
    return process.stdout.readline().strip()


@pytest.mark.usefixtures("transactional_db")
def test_rule_change_is_seen_by_another_process(org: Organization) -> None:
    role = role_create(
        organization=org,
        name="r",
        rules=[{"provider_key": "sandbox", "action_pattern": "sandbox.list_tasks"}],
    )
    process = other_process(role.pk)
    try:
        assert ask(process) == "sandbox.list_tasks"
        assert ask(process) == "sandbox.list_tasks"  # now served from its memory
        # That process holds the rules; a change must still reach it.
        rule_add(role=role, rule={"provider_key": "sandbox", "action_pattern": "sandbox.get_task"})
        assert ask(process) == "sandbox.list_tasks,sandbox.get_task"
    finally:
        process.kill()
        process.wait(timeout=10)
