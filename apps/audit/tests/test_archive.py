"""Audit partitions, retention and verified archives (apps.audit.services.archive).

Events of past months are seeded as valid chain links straight into their month's
partition (the append stamps the present); everything after that runs the real
services: the archive is written to a real store (a directory, or moto's S3 server on
loopback), read back and verified, and the month is detached and dropped."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from apps.audit import offline, partitions
from apps.audit.archives import archive_storage
from apps.audit.chain import GENESIS_HASH, chain_key_for, event_hash
from apps.audit.fields import BY_NAME, WRITTEN
from apps.audit.history import verify_history
from apps.audit.models import ArchiveStatus, AuditArchive, AuditChainHead, AuditEvent
from apps.audit.proof import proof_stream
from apps.audit.services import (
    audit_archive_due,
    audit_partition_drop,
    audit_partitions_ensure,
    audit_retention_set,
)
from apps.organizations.models import Organization

ROOT = Path(__file__).resolve().parents[3]


def _storages(archive: dict[str, Any]) -> dict[str, Any]:
    from django.conf import settings

    return {**settings.STORAGES, "audit_archive": archive}


@pytest.fixture
def archive_dir(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "archive"
    backend = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(where)},
    }
    with override_settings(STORAGES=_storages(backend)):
        yield where


def months_ago(n: int) -> datetime:
    return partitions.add_months(partitions.month_start(timezone.now()), -n)


@transaction.atomic
def seed(org_id: int | None, stamps: list[datetime]) -> list[int]:
    """Append events stamped `stamps` to the organization's first chain, as the
    append would link them. Their months' partitions are created first."""
    key = chain_key_for(org_id)
    head, _ = AuditChainHead.objects.select_for_update().get_or_create(
        chain_key=key, defaults={"seq": 0, "hash": GENESIS_HASH}
    )
    seq, prev = head.seq, head.hash
    ids = []
    for n, at in enumerate(stamps):
        partitions.ensure(at)
        values = {name: BY_NAME[name].default() for name in WRITTEN}
        seq += 1
        values.update(
            chain_key=key,
            created_at=at,
            organization_id=org_id,
            action="org.updated",
            actor_type="system",
            target_label=f"seeded {n}",
            seq=seq,
            prev_hash=prev,
        )
        values["hash"] = prev = event_hash(values)
        event = AuditEvent(**values)
        event.save()
        ids.append(event.pk)
    AuditChainHead.objects.filter(pk=key).update(seq=seq, hash=prev)
    return ids


def partition_names() -> list[str]:
    return [p.name for p in partitions.month_partitions()]


def partition_for(month: datetime) -> partitions.MonthPartition:
    return next(p for p in partitions.month_partitions() if p.start == month)


def two_old_months(org: Organization) -> tuple[datetime, datetime]:
    """Three events three months ago, three two months ago, the last of which got
    its seq before a later-stamped event of the month after (a straggler)."""
    old, older = months_ago(2), months_ago(3)
    seed(org.pk, [older + timedelta(days=d) for d in (1, 2, 3)])
    seed(
        org.pk,
        [
            old + timedelta(days=1),
            old + timedelta(days=2),
            months_ago(1) + timedelta(microseconds=5),  # stamped in the next month
            old + timedelta(days=20),
        ],
    )
    return older, old


def actions(org: Organization, action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(organization=org, action=action))


# --- partitions ---------------------------------------------------------------------


@pytest.mark.django_db
def test_the_migrated_table_is_partitioned_by_month_and_keeps_its_triggers() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT partstrat FROM pg_partitioned_table "
            "WHERE partrelid = 'audit_auditevent'::regclass"
        )
        assert cursor.fetchone() == ("r",)
    now = partitions.month_start(timezone.now())
    names = partition_names()
    for n in range(4):  # the migration creates this month and three ahead
        assert partitions.name_for(partitions.add_months(now, n)) in names


@pytest.mark.django_db
def test_the_scheduler_creates_months_ahead_with_the_append_only_triggers(
    settings: Any,
) -> None:
    settings.GRANTRY_AUDIT_PARTITIONS_AHEAD = 6
    later = partitions.add_months(partitions.month_start(timezone.now()), 6)
    assert partitions.name_for(later) not in partition_names()
    created = audit_partitions_ensure()
    assert created[-1] == partitions.name_for(later)
    assert partitions.name_for(later) in partition_names()
    assert audit_partitions_ensure() == created  # twice is the same
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass ORDER BY tgname",
            [partitions.name_for(later)],
        )
        assert [row[0] for row in cursor.fetchall()] == [
            "audit_event_no_truncate",
            "audit_event_no_update_delete",
        ]


@pytest.mark.django_db
def test_the_append_and_the_triggers_work_on_the_partitioned_table(org: Organization) -> None:
    from django.db import DatabaseError

    from apps.audit.services import audit_record

    event = audit_record(action="org.updated", organization=org)
    assert event is not None
    month = partitions.name_for(partitions.month_start(event.created_at))
    for statement in (f"UPDATE {month} SET reason = 'x'", "DELETE FROM audit_auditevent"):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)


# --- retention ----------------------------------------------------------------------


@pytest.mark.django_db
def test_retention_is_set_per_organization_and_audited(org: Organization, owner: Any) -> None:
    from django.core.exceptions import ValidationError

    audit_retention_set(organization=org, actor=owner, months=6)
    audit_retention_set(organization=org, actor=owner, months=6)  # unchanged: no event
    audit_retention_set(organization=org, actor=owner, months=None)
    events = actions(org, "audit.retention_set")
    assert [e.metadata for e in reversed(events)] == [
        {"from": None, "to": 6},
        {"from": 6, "to": None},
    ]
    assert events[0].actor_id == str(owner.pk)
    for bad in (0, 121):
        with pytest.raises(ValidationError, match="between 1 and 120 months"):
            audit_retention_set(organization=org, actor=owner, months=bad)


# --- archive and drop ---------------------------------------------------------------


@pytest.mark.django_db
def test_months_past_retention_are_archived_verified_and_dropped(
    org: Organization, owner: Any, archive_dir: Path
) -> None:
    older, old = two_old_months(org)
    audit_retention_set(organization=org, actor=owner, months=1)

    summary = audit_archive_due()

    assert summary["dropped"] == [partitions.name_for(older), partitions.name_for(old)]
    assert summary["failed"] == []
    assert partitions.name_for(older) not in partition_names()
    archives = list(AuditArchive.objects.filter(organization=org).order_by("month"))
    assert [(a.month, a.status) for a in archives] == [
        (older.date(), ArchiveStatus.VERIFIED),
        (old.date(), ArchiveStatus.VERIFIED),
    ]
    key = chain_key_for(org.pk)
    assert archives[0].chains[key]["first_seq"] == 1
    assert archives[0].chains[key]["last_seq"] == 3
    # The month's highest seq is 7; the straggler (seq 6, stamped in the next month)
    # is archived with it and still live until its own month goes.
    assert (archives[1].chains[key]["first_seq"], archives[1].chains[key]["last_seq"]) == (4, 7)
    assert AuditEvent.objects.filter(chain_key=key, seq=6).exists()
    assert not AuditEvent.objects.filter(chain_key=key, seq__in=[1, 2, 3, 4, 5, 7]).exists()
    for archive in archives:
        assert archive.percent == 100
        assert archive.verified_at is not None
        stored = archive_dir / archive.path
        lines = stored.read_text().splitlines()
        checkpoint = json.loads(lines[-1])["grantry_checkpoint"]
        assert checkpoint["archive"]["month"] == f"{archive.month:%Y-%m}"
    assert len(actions(org, "audit.archived")) == 2
    dropped = actions(org, "audit.partition_dropped")
    assert sorted(e.metadata["partition"] for e in dropped) == [
        partitions.name_for(older),
        partitions.name_for(old),
    ]

    # One history: the archives (read back from the store), then the live rows.
    archive_reports, chains = verify_history(organization_ids=[org.pk])
    assert all(a.ok for a in archive_reports), archive_reports
    first = next(r for r in chains if r.chain_key == key)
    assert first.ok, first
    assert first.archived == 7
    assert first.count == AuditChainHead.objects.get(pk=key).seq
    call_command("audit_verify", "--org", org.slug)

    # Running again changes nothing.
    again = audit_archive_due()
    assert again["dropped"] == []
    assert again["failed"] == []


@pytest.mark.django_db
@pytest.mark.usefixtures("archive_dir")
def test_a_month_waits_for_every_organizations_retention(
    org: Organization,
    other_org: Organization,
    owner: Any,
) -> None:
    older = months_ago(3)
    seed(org.pk, [older + timedelta(days=1)])
    seed(other_org.pk, [older + timedelta(days=2)])
    audit_retention_set(organization=org, actor=owner, months=1)  # other_org: for ever

    summary = audit_archive_due()

    # org's month is archived early, but the rows go only with the whole month.
    assert summary["dropped"] == []
    assert AuditArchive.objects.get(organization=org).status == ArchiveStatus.VERIFIED
    assert not AuditArchive.objects.filter(organization=other_org).exists()
    assert partitions.name_for(older) in partition_names()
    blockers = audit_partition_drop(partition=partition_for(older))
    assert blockers == [f"organization {other_org.pk}: retention has not passed"]
    # Both histories verify: org's archive overlaps its still-live rows.
    archive_reports, chains = verify_history(organization_ids=[org.pk, other_org.pk])
    assert all(a.ok for a in archive_reports)
    assert all(c.ok for c in chains), chains

    audit_retention_set(organization=other_org, actor=None, months=2)
    assert audit_archive_due()["dropped"] == [partitions.name_for(older)]


@pytest.mark.django_db
def test_events_of_no_organization_follow_the_global_retention(
    org: Organization, owner: Any, archive_dir: Path, settings: Any
) -> None:
    older = months_ago(3)
    seed(org.pk, [older + timedelta(days=1)])
    seed(None, [older + timedelta(days=2), older + timedelta(days=3)])
    audit_retention_set(organization=org, actor=owner, months=1)
    # No global retention (the default): the month stays.
    assert audit_archive_due()["dropped"] == []
    assert audit_partition_drop(partition=partition_for(older)) == [
        "the global chain: retention has not passed"
    ]

    settings.GRANTRY_AUDIT_GLOBAL_RETENTION_MONTHS = 2
    assert audit_archive_due()["dropped"] == [partitions.name_for(older)]
    archive = AuditArchive.objects.get(organization=None)
    assert archive.status == ArchiveStatus.VERIFIED
    assert archive.path.startswith("audit-archive/global/")
    assert archive.chains["global"]["count"] == 2
    # Signed with the installation's key (no organization's), which /.well-known/ serves.
    from apps.audit.models import AuditSigningKeypair

    installation = AuditSigningKeypair.objects.get(organization=None)
    checkpoint = json.loads((archive_dir / archive.path).read_text().splitlines()[-1])
    assert checkpoint["key_id"] == installation.key_id
    assert checkpoint["grantry_checkpoint"]["organization_id"] is None
    report = offline.verify_file(
        str(archive_dir / archive.path), public_key=installation.public_key
    )
    assert report.ok, report.lines()
    # Every chain, the global one included, as one history.
    archive_reports, chains = verify_history()
    assert all(a.ok for a in archive_reports)
    assert all(c.ok for c in chains), [str(c) for c in chains if not c.ok]
    assert next(c for c in chains if c.chain_key == "global").archived == 2
    call_command("audit_verify")


@pytest.mark.django_db
def test_a_tampered_archive_is_refused_before_the_drop(
    org: Organization,
    other_org: Organization,
    owner: Any,
    archive_dir: Path,
) -> None:
    older = months_ago(3)
    seed(org.pk, [older + timedelta(days=d) for d in (1, 2, 3)])
    seed(other_org.pk, [older + timedelta(days=2)])
    audit_retention_set(organization=org, actor=owner, months=1)
    audit_archive_due()  # org archived; other_org keeps the month
    archive = AuditArchive.objects.get(organization=org)
    stored = archive_dir / archive.path
    lines = stored.read_text().splitlines()
    record = json.loads(lines[1])
    record["target_label"] = "nothing to see"
    lines[1] = json.dumps(record)
    stored.chmod(0o640)
    stored.write_text("\n".join(lines) + "\n")

    audit_retention_set(organization=other_org, actor=None, months=1)
    summary = audit_archive_due()

    assert summary["dropped"] == []
    assert partitions.name_for(older) in partition_names()  # nothing dropped
    assert AuditEvent.objects.filter(organization=org, created_at__lt=months_ago(2)).count() == 3
    archive.refresh_from_db()
    assert archive.status == ArchiveStatus.FAILED
    assert "before dropping the month" in archive.error
    failed = actions(org, "audit.archive_failed")
    assert failed
    assert failed[0].metadata["path"] == archive.path
    assert not actions(org, "audit.partition_dropped")
    # The verifier names the archive.
    with pytest.raises(CommandError, match="1 archive"):
        call_command("audit_verify", "--org", org.slug)
    archive_reports, _ = verify_history(organization_ids=[org.pk])
    assert archive.path in str(archive_reports[0])
    assert not archive_reports[0].ok


@pytest.mark.django_db
@pytest.mark.usefixtures("archive_dir")
def test_a_missing_archive_is_refused_before_the_drop(
    org: Organization,
    owner: Any,
) -> None:
    older = months_ago(3)
    seed(org.pk, [older + timedelta(days=1)])
    seed(org.pk, [months_ago(2) + timedelta(days=1)])
    audit_retention_set(organization=org, actor=owner, months=2)  # only the older month
    # Archive the month without dropping it: write, then lose the file, then drop.
    from apps.audit.services import audit_archive_month

    archive = audit_archive_month(organization_id=org.pk, partition=partition_for(older))
    assert archive is not None
    assert archive.status == ArchiveStatus.VERIFIED
    archive_storage().delete(archive.path)
    blockers = audit_partition_drop(partition=partition_for(older))
    assert blockers
    assert "cannot read" in blockers[0]
    assert partitions.name_for(older) in partition_names()


# --- the offline verifier over archives and the live table ----------------------------


@pytest.mark.django_db
def test_the_offline_verifier_reads_archives_and_a_live_export_as_one_history(
    org: Organization, owner: Any, archive_dir: Path, tmp_path: Path
) -> None:
    _older, _old = two_old_months(org)
    audit_retention_set(organization=org, actor=owner, months=1)
    audit_archive_due()
    archives = [archive_dir / a.path for a in AuditArchive.objects.order_by("month")]
    live = tmp_path / "live.jsonl"
    live.write_text("".join(proof_stream("jsonl", org)))
    files = [str(path) for path in [*archives, live]]
    key = org.audit_signing_key.public_key

    history = offline.verify_files(files, public_key=key)
    assert history.ok, history.lines()
    head = AuditChainHead.objects.get(pk=chain_key_for(org.pk))
    assert history.chains[head.chain_key] == (head.seq, head.hash)

    # The standalone script, as a separate process, over the same files.
    def run(paths: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # our own script, fixed arguments
            [sys.executable, "-I", str(ROOT / "scripts" / "verify_audit_export.py"), *paths,
             "--public-key", key],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    ok = run(files)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "as one history" in ok.stdout

    # Leaving the second archive out is a gap, named.
    gap = run([files[0], files[2]])
    assert gap.returncode == 1
    assert "events 4..7 are missing" in gap.stderr

    # A tampered archive is named with its line.
    tampered = tmp_path / "tampered.jsonl"
    lines = archives[0].read_text().splitlines()
    record = json.loads(lines[0])
    record["target_label"] = "edited"
    lines[0] = json.dumps(record)
    tampered.write_text("\n".join(lines) + "\n")
    bad = run([str(tampered), *files[1:]])
    assert bad.returncode == 1
    assert f"{tampered}: PROBLEM line 1" in bad.stdout + bad.stderr


# --- S3-compatible store (moto's server on loopback) --------------------------------


@pytest.fixture
def s3_archive() -> Iterator[Any]:
    """moto's S3-compatible server on 127.0.0.1, a bucket in it, and the archive
    store pointed at it through django-storages (boto3 over HTTP, nothing mocked)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **credentials)
    client.create_bucket(Bucket="grantry-audit")
    backend = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": "grantry-audit",
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "access_key": "testing",
            "secret_key": "testing",
            "location": "grantry",
            "file_overwrite": False,
            "addressing_style": "path",
        },
    }
    try:
        with override_settings(STORAGES=_storages(backend)):
            yield client
    finally:
        server.stop()


@pytest.mark.django_db
def test_archives_go_to_an_s3_compatible_store_and_are_verified_there(
    org: Organization, owner: Any, s3_archive: Any
) -> None:
    older, old = two_old_months(org)
    audit_retention_set(organization=org, actor=owner, months=1)
    summary = audit_archive_due()
    assert summary["dropped"] == [partitions.name_for(older), partitions.name_for(old)]
    keys = sorted(
        item["Key"] for item in s3_archive.list_objects_v2(Bucket="grantry-audit")["Contents"]
    )
    archives = list(AuditArchive.objects.order_by("month"))
    assert keys == sorted(f"grantry/{a.path}" for a in archives)
    body = s3_archive.get_object(Bucket="grantry-audit", Key=keys[0])["Body"].read()
    report = offline.verify_bytes(body, public_key=org.audit_signing_key.public_key)
    assert report.ok
    assert report.events == 3
    archive_reports, chains = verify_history(organization_ids=[org.pk])
    assert all(a.ok for a in archive_reports)
    assert all(c.ok for c in chains)

    # Changed in the bucket: refused when the history is read.
    s3_archive.put_object(
        Bucket="grantry-audit", Key=keys[0], Body=body.replace(b"seeded", b"edited")
    )
    archive_reports, _ = verify_history(organization_ids=[org.pk])
    assert not archive_reports[0].ok


# --- the scheduler's task on a real worker ------------------------------------------


@pytest.mark.celery
@pytest.mark.usefixtures("celery_worker")
def test_the_archival_task_runs_on_a_worker_with_progress_and_events(
    org: Organization, owner: Any, archive_dir: Path
) -> None:
    import time

    from grantry.celery import app

    older, old = two_old_months(org)
    audit_retention_set(organization=org, actor=owner, months=1)

    app.send_task("audit.archive_due")

    deadline = time.monotonic() + 60
    while partitions.name_for(old) in partition_names():
        assert time.monotonic() < deadline, "the months were not dropped"
        time.sleep(0.2)
    archives = list(AuditArchive.objects.order_by("month"))
    assert [a.status for a in archives] == [ArchiveStatus.VERIFIED] * 2
    assert [(a.rows_done, a.rows_total) for a in archives] == [(3, 3), (4, 4)]
    assert all((archive_dir / a.path).exists() for a in archives)
    assert len(actions(org, "audit.archived")) == 2
    assert len(actions(org, "audit.partition_dropped")) == 2
    assert partitions.name_for(older) not in partition_names()
    call_command("audit_verify", "--org", org.slug)


@pytest.mark.usefixtures("archive_dir")
def test_one_archival_run_at_a_time_through_a_lease_any_node_sees(
    org: Organization, owner: Any
) -> None:
    """The lease lives in the shared cache, not in a PostgreSQL session (which PgBouncer in
    transaction mode would hand to another client): a run on another node that holds it
    makes this one skip and touch nothing; once it is gone, the run goes ahead and leaves
    no lease behind."""
    from django.core.cache import cache

    from apps.audit.services.archive import RUN_LEASE_KEY

    older, _old = two_old_months(org)
    audit_retention_set(organization=org, actor=owner, months=1)
    cache.set(RUN_LEASE_KEY, "another-node", timeout=60)
    skipped = audit_archive_due()
    assert skipped["skipped"] == "another archival run holds the lease"
    assert skipped["dropped"] == []
    assert not AuditArchive.objects.exists()
    assert cache.get(RUN_LEASE_KEY) == "another-node"  # not ours to release
    cache.delete(RUN_LEASE_KEY)
    ran = audit_archive_due()
    assert partitions.name_for(older) in ran["dropped"]
    assert cache.get(RUN_LEASE_KEY) is None
