"""Retention and archival: how a month leaves the live table.

The table is partitioned by UTC month for every organization at once; chains and
retention are per organization. So:

* An organization sets a retention in whole months (`audit_retention_set`, audited);
  none means its trail is kept for ever. The global chain (events of no organization)
  follows GRANTRY_AUDIT_GLOBAL_RETENTION_MONTHS.
* Archival is per organization and month (`audit_archive_month`): once the
  organization's retention has passed for a month, its events of that month are
  written to the archive store as an export with proof — the same format as any proof
  export (apps.audit.proof): chain links on every row and a checkpoint signed with the
  organization's key, naming the month it archives — then read back from the store and
  verified with the offline verifier against the organization's pinned public key. A
  chain's archive of month M runs by seq from where its previous archive ended to the
  highest seq the chain has in M, so archives are contiguous and disjoint; an event
  that got its seq before a later-stamped one (the append stamps the time before it
  gets the chain's lock) may live in month M+1's partition and be archived with M.
* Rows are deleted only by dropping a whole month (`audit_partition_drop`), never by
  DELETE (the triggers refuse it for everyone). A month is detached and dropped only
  when every organization with events in it (and the global chain, if it has any) is
  past its retention AND every one of its chains is covered by a verified archive up
  to its highest seq in the month. The archives are verified again just before the
  drop; one that fails (missing, changed, a bad signature) stops the drop and is
  recorded (`audit.archive_failed`). So an organization with a shorter retention has
  its months archived early, but its rows leave the live table with the month's
  partition, when the longest retention among the month's organizations has passed.
* The global chain (events of no organization, e.g. a failed sign-in for an unknown
  address) follows GRANTRY_AUDIT_GLOBAL_RETENTION_MONTHS (unset: kept for ever, so a
  month holding global events stays) and its archives are signed with the
  installation's key (the AuditSigningKeypair of no organization).
* `audit_archive_due` (the scheduler's task) creates months ahead, archives what is
  due and drops the months that may go.

`audit_verify` and the offline verifier read archives and live rows as one history
(apps.audit.history). Reading and checking an archive is apps.audit.archives."""

from __future__ import annotations

import hashlib
import logging
import tempfile
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from apps.audit import partitions, selectors
from apps.audit.archives import archive_problems, archive_storage, archived_through
from apps.audit.models import (
    ArchiveStatus,
    AuditArchive,
    AuditRetention,
    Outcome,
)
from apps.audit.writer import audit_record

logger = logging.getLogger("grantry.audit.archive")

RETENTION_MAX_MONTHS = 120
PROGRESS_EVERY = 5000
# One archival run at a time across every worker and node: a lease in the shared cache
# (Redis), not a PostgreSQL session lock, which PgBouncer in transaction mode would hand
# to another client (the lock taken on one server connection, the unlock sent to another).
# The run renews it as it makes progress; a crashed run's lease lapses.
RUN_LEASE_KEY = "grantry:audit:archive-run"
RUN_LEASE_SECONDS = 15 * 60


# --- retention ---------------------------------------------------------------------


@transaction.atomic
def audit_retention_set(*, organization: Any, actor: Any, months: int | None) -> int | None:
    """Keep the organization's events `months` whole months after their month ends
    (None: for ever). Audited as `audit.retention_set` with the old and new value."""
    if months is not None and not 1 <= months <= RETENTION_MAX_MONTHS:
        raise ValidationError(
            {
                "audit_retention_months": (
                    f"Choose a retention between 1 and {RETENTION_MAX_MONTHS} months, "
                    "or leave it empty to keep the audit trail for ever."
                )
            }
        )
    row = AuditRetention.objects.select_for_update().filter(organization=organization).first()
    before = row.months if row is not None else None
    if before == months:
        return months
    if months is None:
        AuditRetention.objects.filter(organization=organization).delete()
    elif row is None:
        AuditRetention.objects.create(organization=organization, months=months)
    else:
        row.months = months
        row.save(update_fields=["months", "updated_at"])
    audit_record(
        action="audit.retention_set",
        organization=organization,
        actor=actor,
        target_type="audit_trail",
        target_label=f"{months} months" if months else "kept for ever",
        metadata={"from": before, "to": months},
    )
    return months


def retention_months(organization_id: int | None) -> int | None:
    if organization_id is None:
        return int(getattr(settings, "GRANTRY_AUDIT_GLOBAL_RETENTION_MONTHS", 0)) or None
    return selectors.retention_months(organization_id)


def retention_passed(
    organization_id: int | None, partition: partitions.MonthPartition, now: datetime
) -> bool:
    months = retention_months(organization_id)
    return months is not None and partitions.add_months(partition.end, months) <= now


# --- partitions ahead --------------------------------------------------------------


def audit_partitions_ensure(*, now: datetime | None = None) -> list[str]:
    """The current month and GRANTRY_AUDIT_PARTITIONS_AHEAD months after it exist."""
    now = now or timezone.now()
    ahead = int(getattr(settings, "GRANTRY_AUDIT_PARTITIONS_AHEAD", 3))
    month = partitions.month_start(now)
    names = []
    for n in range(ahead + 1):
        with transaction.atomic():
            names.append(partitions.ensure(partitions.add_months(month, n)))
    return names


# --- archiving one organization's month --------------------------------------------


def audit_archive_month(
    *,
    organization_id: int | None,
    partition: partitions.MonthPartition,
    progress: Callable[[int], None] | None = None,
) -> AuditArchive | None:
    """Write the organization's events of the month to the archive store and verify
    them there. Returns the archive (VERIFIED, or FAILED with the reason), or None when
    earlier archives already cover the month. Safe to run twice."""
    # None (the global chain) is an IS NULL lookup.
    owner: dict[str, Any] = {"organization_id": organization_id}
    done = AuditArchive.objects.filter(
        **owner, month=partition.month, status=ArchiveStatus.VERIFIED
    ).first()
    if done is not None:
        return done
    covered = archived_through(organization_id)
    ranges = {
        key: (covered.get(key, (0, ""))[0] + 1, top)
        for key, top in partitions.chain_max_seq(partition, organization_id).items()
        if top > covered.get(key, (0, ""))[0]
    }
    if not ranges:
        return None
    archive, _ = AuditArchive.objects.update_or_create(
        **owner,
        month=partition.month,
        defaults={
            "status": ArchiveStatus.RUNNING,
            "rows_total": sum(last - first + 1 for first, last in ranges.values()),
            "rows_done": 0,
            "error": "",
        },
    )
    archive = AuditArchive.objects.select_related("organization").get(pk=archive.pk)
    try:
        _write(archive, ranges, progress)
    except Exception as exc:
        AuditArchive.objects.filter(pk=archive.pk).update(
            status=ArchiveStatus.FAILED, error=f"writing failed: {type(exc).__name__}"[:300]
        )
        raise
    problems, report = archive_problems(archive, expected=ranges)
    if problems:
        _failed(archive, problems, when="after writing")
        return archive
    with transaction.atomic():
        archive.chains = {
            key: {
                "first_seq": chain.first_seq,
                "first_prev_hash": chain.first_prev_hash,
                "last_seq": chain.last_seq,
                "last_hash": chain.last_hash,
                "count": chain.count,
            }
            for key, chain in report.chains.items()
        }
        archive.status, archive.verified_at = ArchiveStatus.VERIFIED, timezone.now()
        archive.rows_done = report.events
        archive.save(update_fields=["chains", "status", "verified_at", "rows_done"])
        audit_record(
            action="audit.archived",
            organization_id=organization_id,
            target_type="audit_archive",
            target_id=archive.pk,
            target_label=f"{partition.month:%Y-%m}",
            metadata={
                "month": f"{partition.month:%Y-%m}",
                "path": archive.path,
                "sha256": archive.sha256,
                "events": report.events,
                "chains": {k: [v["first_seq"], v["last_seq"]] for k, v in archive.chains.items()},
                "storage": type(archive_storage()).__name__,
            },
        )
    return archive


def _write(
    archive: AuditArchive,
    ranges: dict[str, tuple[int, int]],
    progress: Callable[[int], None] | None,
) -> None:
    from apps.audit.proof import proof_stream
    from apps.audit.signing import signing_key

    organization = archive.organization
    signing_key(organization)  # created (and audited) before the stream, not inside it
    month = f"{archive.month:%Y-%m}"
    owner = archive.organization_id if archive.organization_id is not None else "global"
    name = f"audit-archive/{owner}/{month}-{uuid.uuid4().hex[:12]}.jsonl"
    digest = hashlib.sha256()
    done = reported = 0
    with tempfile.TemporaryFile(mode="w+b") as spool:
        for piece in proof_stream(
            "jsonl",
            organization,
            ranges=ranges,
            archive={"month": month, "partition": partitions.name_for(_as_dt(archive))},
        ):
            data = piece.encode()
            digest.update(data)
            spool.write(data)
            done += piece.count("\n")
            if done - reported >= PROGRESS_EVERY:
                AuditArchive.objects.filter(pk=archive.pk).update(rows_done=done)
                reported = done
                if progress is not None:
                    progress(done)
        spool.seek(0)
        stored = archive_storage().save(name, File(spool, name=name))
    archive.path, archive.sha256 = stored, digest.hexdigest()
    AuditArchive.objects.filter(pk=archive.pk).update(
        path=archive.path, sha256=archive.sha256, rows_done=done
    )


def _as_dt(archive: AuditArchive) -> datetime:
    return partitions.month_start(archive.month)


def _failed(archive: AuditArchive, problems: list[str], *, when: str) -> None:
    with transaction.atomic():
        AuditArchive.objects.filter(pk=archive.pk).update(
            status=ArchiveStatus.FAILED, error=f"{when}: {problems[0]}"[:300]
        )
        archive.status = ArchiveStatus.FAILED
        audit_record(
            action="audit.archive_failed",
            organization_id=archive.organization_id,
            target_type="audit_archive",
            target_id=archive.pk,
            target_label=f"{archive.month:%Y-%m}",
            outcome=Outcome.FAILURE,
            metadata={"when": when, "path": archive.path, "problems": problems[:10]},
        )


# --- dropping a month --------------------------------------------------------------


def drop_blockers(partition: partitions.MonthPartition, *, now: datetime) -> list[str]:
    """Why the month may not leave the live table yet (none: it may)."""
    blockers = []
    for subject in partitions.subjects(partition):
        who = "the global chain" if subject is None else f"organization {subject}"
        if not retention_passed(subject, partition, now):
            blockers.append(f"{who}: retention has not passed")
            continue
        covered = archived_through(subject)
        for key, top in partitions.chain_max_seq(partition, subject).items():
            if top > covered.get(key, (0, ""))[0]:
                blockers.append(f"{who}: chain {key} is not archived up to seq {top}")
    return blockers


def audit_partition_drop(
    *, partition: partitions.MonthPartition, now: datetime | None = None
) -> list[str]:
    """Detach and drop the month if it may go; the reasons it may not (empty: dropped).

    The archives holding its rows are verified again first, from the store; a failure
    marks that archive FAILED (audited) and nothing is dropped."""
    now = now or timezone.now()
    if partition.end > partitions.month_start(now):
        return ["the month is not over"]
    blockers = drop_blockers(partition, now=now)
    if blockers:
        return blockers
    # The archives that hold this month's rows: the month's own, and the month
    # before's (an event stamped in this month may have got its seq before the
    # previous month's last one, and then sits in that archive).
    archives = list(
        AuditArchive.objects.filter(
            month__in=[partition.month, partitions.add_months(partition.start, -1).date()],
            status=ArchiveStatus.VERIFIED,
        )
    )
    for archive in archives:
        problems, _ = archive_problems(archive)
        if problems:
            _failed(archive, problems, when="before dropping the month")
            return [f"archive {archive.path}: {problems[0]}"]
    with transaction.atomic():
        partitions.drop(partition)
        for archive in archives:
            if archive.month != partition.month:
                continue
            audit_record(
                action="audit.partition_dropped",
                organization_id=archive.organization_id,
                target_type="audit_archive",
                target_id=archive.pk,
                target_label=f"{partition.month:%Y-%m}",
                metadata={
                    "month": f"{partition.month:%Y-%m}",
                    "partition": partition.name,
                    "archive": archive.path,
                    "sha256": archive.sha256,
                },
            )
        AuditArchive.objects.filter(month=partition.month).update(dropped_at=now)
    logger.warning("audit month %s archived and dropped", partition.name)
    return []


# --- the scheduler's run -----------------------------------------------------------


def audit_archive_due(
    *, now: datetime | None = None, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Create months ahead, archive every organization-month past its retention
    (oldest first) and drop the months that may go. One run at a time (RUN_LEASE_KEY)."""
    now = now or timezone.now()
    summary: dict[str, Any] = {"created": [], "archived": [], "failed": [], "dropped": []}
    holder = uuid.uuid4().hex
    if not cache.add(RUN_LEASE_KEY, holder, timeout=RUN_LEASE_SECONDS):
        summary["skipped"] = "another archival run holds the lease"
        return summary

    def renewing(done: int) -> None:
        cache.touch(RUN_LEASE_KEY, RUN_LEASE_SECONDS)
        if progress is not None:
            progress(done)

    try:
        summary["created"] = audit_partitions_ensure(now=now)
        _archive_and_drop(now, renewing, summary)
    finally:
        if cache.get(RUN_LEASE_KEY) == holder:
            cache.delete(RUN_LEASE_KEY)
    return summary


def _archive_and_drop(
    now: datetime, progress: Callable[[int], None], summary: dict[str, Any]
) -> None:
    current = partitions.month_start(now)
    stopped: set[int | None] = set()  # an organization whose archive failed
    for partition in partitions.month_partitions():
        if partition.end > current:
            break
        for subject in partitions.subjects(partition):
            if subject in stopped or not retention_passed(subject, partition, now):
                continue
            archive = audit_archive_month(
                organization_id=subject, partition=partition, progress=progress
            )
            if archive is None:
                continue
            if archive.status == ArchiveStatus.VERIFIED:
                summary["archived"].append(archive.path)
            else:
                summary["failed"].append(archive.path)
                stopped.add(subject)
        if not audit_partition_drop(partition=partition, now=now):
            summary["dropped"].append(partition.name)
