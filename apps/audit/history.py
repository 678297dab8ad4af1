"""The trail as one history: the verified archives, then the live table.

`verify_history()` is what `audit_verify` (and the dashboard's and API's verification)
runs. Per organization, oldest month first, each archive is read back from the
archive store and checked (apps.audit.archives: signature under the organization's
key, links, SHA-256, coverage) and must go on exactly where the previous one ended,
chain by chain. The live rows then go on from where the archives end
(apps.audit.verify.verify_chains with `archived`). An archive that failed a check is a
broken history, named with its path."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection

from apps.audit.archives import archive_problems
from apps.audit.models import ArchiveStatus, AuditArchive
from apps.audit.verify import ArchivedChain, ChainReport, verify_chains


@dataclass
class ArchiveReport:
    path: str
    month: str
    organization_id: int | None
    events: int = 0
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem

    def __str__(self) -> str:
        verdict = "OK" if self.ok else "BROKEN"
        who = self.organization_id if self.organization_id is not None else "global"
        tail = f": {self.problem}" if self.problem else f": {self.events} events"
        return f"{verdict} archive {self.month} of organization {who} at {self.path}{tail}"


# Where runs of live rows at or below a seq end: each such event must be the archived one.
_RUN_ENDS = """
SELECT seq FROM (
    SELECT seq, lead(seq) OVER (ORDER BY seq) AS next
    FROM audit_auditevent WHERE chain_key = %s AND seq <= %s
) runs WHERE next IS NULL OR next <> seq + 1
"""


def verify_history(
    *, organization_ids: Iterable[int] | None = None, read_archives: bool = True
) -> tuple[list[ArchiveReport], list[ChainReport]]:
    """Every archive (checked from the store unless `read_archives` is off) and every
    chain's live rows going on from them."""
    ids = None if organization_ids is None else [int(i) for i in organization_ids]
    archives = AuditArchive.objects.exclude(status=ArchiveStatus.RUNNING).order_by(
        "organization_id", "month"
    )
    if ids is not None:
        archives = archives.filter(organization_id__in=ids)
    rows = list(archives)
    reports, reach = _recorded(rows)
    _run_ends(reach)
    if read_archives:
        _read(rows, reports, reach)
    for chain in reach.values():  # a run end the archives do not hold stays unchecked
        chain.points = {seq: h for seq, h in chain.points.items() if h}
    return reports, verify_chains(organization_ids=ids, archived=reach)


def _recorded(rows: list[AuditArchive]) -> tuple[list[ArchiveReport], dict[str, ArchivedChain]]:
    """Each archive's report, and where each chain's archives end, from what was recorded
    when they were verified; each must go on exactly where the previous one ended."""
    reports: list[ArchiveReport] = []
    reach: dict[str, ArchivedChain] = {}
    for archive in rows:
        report = ArchiveReport(
            archive.path, f"{archive.month:%Y-%m}", archive.organization_id, archive.rows_done
        )
        reports.append(report)
        if archive.status == ArchiveStatus.FAILED:
            report.problem = f"failed verification ({archive.error})"
            continue
        for key, entry in sorted(archive.chains.items()):
            had = reach.get(key)
            last_seq, last_hash = (had.last_seq, had.last_hash) if had else (0, "0" * 64)
            if entry["first_seq"] != last_seq + 1 or entry["first_prev_hash"] != last_hash:
                report.problem = (
                    f"chain {key} starts at seq {entry['first_seq']}, but the archives before "
                    f"it end at seq {last_seq} (not contiguous)"
                )
            count = (had.count if had else 0) + int(entry["count"])
            reach[key] = ArchivedChain(entry["last_seq"], entry["last_hash"], count)
    return reports, reach


def _read(
    rows: list[AuditArchive], reports: list[ArchiveReport], reach: dict[str, ArchivedChain]
) -> None:
    """Check every archive from the store, keeping the archived hashes where runs of
    live rows that are archived too end."""
    for archive, report in zip(rows, reports, strict=True):
        if report.problem or archive.status != ArchiveStatus.VERIFIED:
            continue
        watch = {
            key: [seq for seq in chain.points if _holds(archive, key, seq)]
            for key, chain in reach.items()
        }
        problems, checked = archive_problems(archive, watch=watch)
        if problems:
            report.problem = problems[0]
        for (key, seq), hash_ in checked.watched.items():
            reach[key].points[seq] = hash_


def _run_ends(reach: dict[str, ArchivedChain]) -> None:
    with connection.cursor() as cursor:
        for key, chain in reach.items():
            cursor.execute(_RUN_ENDS, [key, chain.last_seq])
            chain.points = {int(row[0]): "" for row in cursor.fetchall()}
            chain.points.pop(chain.last_seq, None)  # that one is last_hash


def _holds(archive: AuditArchive, key: str, seq: int) -> bool:
    entry = archive.chains.get(key)
    return entry is not None and entry["first_seq"] <= seq <= entry["last_seq"]
