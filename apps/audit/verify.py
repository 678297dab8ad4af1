"""Verification of the hash chains (`manage.py audit_verify`).

An organization's trail is one or more chains ("org:<id>", and shards
"org:<id>:<n>"); each is verified on its own.

Walks each chain in seq order through a server-side cursor (constant memory),
recomputes every hash, checks every prev link and the seq continuity, and
compares the last link with AuditChainHead. Stops a chain at its FIRST break:
everything after a break is unverifiable by construction."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.db import connections, transaction
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL

from apps.audit.chain import GENESIS_HASH, chain_key_for, event_hash
from apps.audit.fields import BY_NAME, of_kind
from apps.audit.models import AuditChainHead, AuditEvent

CHUNK_SIZE = 5000
# Every column of the one list (apps.audit.fields), link included.
_COLUMNS = tuple(BY_NAME)
_JSON_AT = [_COLUMNS.index(name) for name in of_kind("json")]


def _pg_iso(name: str) -> str:
    return (
        f'to_char("audit_auditevent"."{name}" AT TIME ZONE \'UTC\', '
        '\'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\')'
    )


@dataclass
class ArchivedChain:
    """Where a chain's verified archives end (apps.audit.history): the live rows go on
    from here. `points`: the archived hashes at the seqs where runs of live rows that
    are archived too end ({seq: hash}), to show they are the archived events."""

    last_seq: int
    last_hash: str
    count: int
    points: dict[int, str] = field(default_factory=dict)


@dataclass
class ChainReport:
    chain_key: str
    count: int = 0
    archived: int = 0
    head_hash: str = GENESIS_HASH
    event_id: int | None = None
    seq: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem

    def __str__(self) -> str:
        if self.ok:
            where = f" ({self.archived} archived)" if self.archived else ""
            return f"OK {self.chain_key}: {self.count} events{where}, head {self.head_hash}"
        where = f"event id={self.event_id} seq={self.seq}" if self.event_id else "chain head"
        return f"BROKEN {self.chain_key} at {where}: {self.problem}"


def _rows(organization_ids: list[int] | None) -> Iterator[dict[str, object]]:
    events = AuditEvent.objects.order_by("chain_key", "seq")
    if organization_ids is not None:
        # By key pattern, not by the heads found: a shard whose head row is gone
        # still has its events checked (and reported without a head).
        events = events.filter(org_chains_q(organization_ids))
    return hashing_rows(events)


def hashing_rows(events: QuerySet[AuditEvent]) -> Iterator[dict[str, object]]:
    """The rows of `events` (in the queryset's order) as the values the chain hashed:
    times (`created_at`) as canonical UTC text, JSON (`metadata`) decoded.

    Straight from a server-side cursor: the ORM's per-row converters cost more
    than the hashing itself, and verification is benchmarked."""
    connection = connections[events.db]
    columns = list(_COLUMNS)
    # Exactly datetime.isoformat(timespec="microseconds") of a UTC time, without
    # parsing a datetime per row in Python.
    for name in of_kind("time"):
        events = events.annotate(**{f"{name}_iso": RawSQL(_pg_iso(name), ())})  # noqa: S611 - a column name of ours
        columns[columns.index(name)] = f"{name}_iso"
    sql, params = events.values_list(*columns).query.sql_with_params()
    with transaction.atomic(using=events.db), connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(CHUNK_SIZE):
            for row in batch:
                values = dict(zip(_COLUMNS, row, strict=True))
                for at in _JSON_AT:
                    if isinstance(row[at], str | bytes):
                        values[_COLUMNS[at]] = json.loads(row[at])
                yield values


def _check_head(report: ChainReport, head: AuditChainHead | None, last_seq: int) -> None:
    if head is None:
        report.problem = "events exist but the chain has no head record"
    elif head.seq != last_seq or head.hash != report.head_hash:
        report.problem = (
            f"the head records seq {head.seq} hash {head.hash}, but the last event is "
            f"seq {last_seq} hash {report.head_hash} (events after it are missing)"
        )


def _finish(
    report: ChainReport, heads: dict[str, AuditChainHead], last_seq: int, broken: bool
) -> None:
    head = heads.pop(report.chain_key, None)
    if not broken:
        _check_head(report, head, last_seq)


def _last(expected_seq: int, start: ArchivedChain | None) -> int:
    """The chain's last seq: the live rows', or the archive's when no live row is later."""
    return max(expected_seq - 1, start.last_seq if start is not None else 0)


def org_chains_q(organization_ids: Iterable[int], field: str = "chain_key") -> Q:
    """Every chain of these organizations: shard 0 is "org:<id>", shard n "org:<id>:<n>"."""
    q = Q(pk__in=[])
    for org_id in organization_ids:
        key = chain_key_for(org_id)
        q |= Q(**{field: key}) | Q(**{f"{field}__startswith": f"{key}:"})
    return q


def _row_problem(row: dict[str, object], expected_seq: int, prev_hash: str) -> str:
    """Why this event breaks its chain where it stands ("": it does not)."""
    if row["seq"] != expected_seq:
        return f"expected seq {expected_seq}, found seq {row['seq']} (events missing)"
    if row["prev_hash"] != prev_hash:
        return "prev_hash does not match the previous event's hash (reordered or removed)"
    if event_hash(row) != row["hash"]:
        return "stored hash does not match the event's contents (edited)"
    return ""


def _headless_reports(heads: dict[str, AuditChainHead]) -> list[ChainReport]:
    """The chains whose head is left over: they have no events at all."""
    return [
        ChainReport(chain_key=key, problem=f"the head records seq {head.seq} but no events exist")
        if head.seq != 0
        else ChainReport(chain_key=key)
        for key, head in heads.items()
    ]


def _open_chain(
    key: str, archived: dict[str, ArchivedChain]
) -> tuple[ChainReport, ArchivedChain | None, int, str]:
    """A chain's report, its archives' end, and the seq and link its walk expects first."""
    report = ChainReport(chain_key=key)
    start = archived.pop(key, None)
    if start is None:
        return report, None, 1, GENESIS_HASH
    report.count = report.archived = start.count
    report.head_hash = start.last_hash
    return report, start, start.last_seq + 1, start.last_hash


def _resume(
    row: dict[str, object], start: ArchivedChain | None, expected_seq: int, prev_hash: str
) -> tuple[int, str]:
    """Where the walk expects this row, given the chain's archives: a run of live rows
    that are archived too (a month archived but not dropped yet, or events stamped in
    the month after) starts where it starts, and the first live row after the archives
    links to their last hash."""
    if start is None:
        return expected_seq, prev_hash
    seq = int(str(row["seq"]))
    if seq <= start.last_seq and seq != expected_seq:
        return seq, str(row["prev_hash"])
    if seq == start.last_seq + 1 and expected_seq <= seq:
        return seq, start.last_hash
    return expected_seq, prev_hash


def _archived_problem(row: dict[str, object], start: ArchivedChain | None) -> str:
    """A live row that is archived too must be the archived event (checked where runs
    of such rows end; their own links prove the rest)."""
    seq = int(str(row["seq"]))
    if start is None or seq > start.last_seq:
        return ""
    archived_hash = start.last_hash if seq == start.last_seq else start.points.get(seq)
    if archived_hash is not None and row["hash"] != archived_hash:
        return "differs from the archived event with this seq"
    return ""


def _archived_only(
    archived: dict[str, ArchivedChain], heads: dict[str, AuditChainHead]
) -> list[ChainReport]:
    """Chains every event of which is archived (none left live)."""
    reports = []
    for key, start in archived.items():
        report = ChainReport(
            chain_key=key, count=start.count, archived=start.count, head_hash=start.last_hash
        )
        _finish(report, heads, start.last_seq, False)
        reports.append(report)
    return reports


def verify_chains(
    *,
    organization_ids: Iterable[int] | None = None,
    archived: dict[str, ArchivedChain] | None = None,
) -> list[ChainReport]:
    """One report per chain; `organization_ids=None` means every chain.

    With `archived` (apps.audit.history), a chain's live rows go on from where its
    archives end: the first live event after them links to the last archived hash, and
    live events that are archived too must be the archived ones."""
    archived = dict(archived or {})
    org_ids = None if organization_ids is None else [int(i) for i in organization_ids]
    heads_qs = AuditChainHead.objects.all()
    if org_ids is not None:
        # Every chain of these organizations: "org:<id>" and its shards "org:<id>:<n>".
        heads_qs = heads_qs.filter(org_chains_q(org_ids))
    heads = {head.chain_key: head for head in heads_qs}

    reports: list[ChainReport] = []
    report: ChainReport | None = None
    start: ArchivedChain | None = None
    expected_seq, prev_hash, broken = 1, GENESIS_HASH, False
    for row in _rows(org_ids):
        key = str(row["chain_key"])
        if report is None or key != report.chain_key:
            if report is not None:
                _finish(report, heads, _last(expected_seq, start), broken)
            report, start, expected_seq, prev_hash = _open_chain(key, archived)
            reports.append(report)
            broken = False
        if broken:
            continue
        expected_seq, prev_hash = _resume(row, start, expected_seq, prev_hash)
        problem = _row_problem(row, expected_seq, prev_hash) or _archived_problem(row, start)
        if problem:
            report.event_id, report.seq = int(str(row["id"])), int(str(row["seq"]))
            report.problem = problem
            broken = True
            continue
        if start is None or int(str(row["seq"])) > start.last_seq:
            report.count += 1
            report.head_hash = str(row["hash"])
        prev_hash = str(row["hash"])
        expected_seq += 1
    if report is not None:
        _finish(report, heads, _last(expected_seq, start), broken)
    return reports + _archived_only(archived, heads) + _headless_reports(heads)
