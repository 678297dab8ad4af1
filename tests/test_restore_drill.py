"""The restore drill (scripts/restore_drill.py, docs/operations.md "Backups"): a
pg_dump of the database restored into a new one verifies chain by chain, and a row
tampered with in the restored copy is named by `manage.py audit_verify`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.organizations.models import Organization
from tests.backends import database_url

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db(transaction=True)
def test_a_restored_backup_verifies_and_a_tampered_row_is_named(
    org: Organization, tmp_path: Path
) -> None:
    for n in range(12):
        audit_record(action="worker.created", organization=org, metadata={"n": n})
    source = database_url(settings.DATABASES["default"])
    env = {**os.environ, "DATABASE_URL": source, "DJANGO_SETTINGS_MODULE": "grantry.settings_test"}
    dump = tmp_path / "grantry.dump"
    drill = subprocess.run(
        [sys.executable, "scripts/restore_drill.py", "--dump", str(dump), "--keep"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert drill.returncode == 0, drill.stdout + drill.stderr
    assert "RESTORE DRILL PASSED" in drill.stdout
    assert dump.stat().st_size > 0
    restored = drill.stdout.split("kept: ", 1)[1].split()[0]
    assert restored != source
    try:
        assert "OK " in drill.stdout  # audit_verify printed its chains
        victim = AuditEvent.objects.filter(organization_id=org.pk).order_by("id")[5]
        subprocess.run(
            [
                "psql",
                restored,
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "SET session_replication_role = replica; "  # past the append-only triggers
                f"UPDATE audit_auditevent SET reason = 'edited' WHERE id = {victim.pk};",
            ],
            check=True,
            capture_output=True,
        )
        verify = subprocess.run(
            [sys.executable, "manage.py", "audit_verify"],
            cwd=ROOT,
            env={**env, "DATABASE_URL": restored},
            capture_output=True,
            text=True,
            check=False,
        )
        assert verify.returncode != 0
        assert f"event id={victim.pk} seq={victim.seq}" in verify.stderr
        # The source was never touched.
        assert AuditEvent.objects.get(pk=victim.pk).reason == ""
    finally:
        maintenance = restored.rsplit("/", 1)[0] + "/postgres"
        name = restored.rsplit("/", 1)[1]
        subprocess.run(
            ["dropdb", f"--maintenance-db={maintenance}", "--if-exists", name], check=False
        )
