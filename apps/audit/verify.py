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
from dataclasses import dataclass

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
class ChainReport:
    chain_key: str
    count: int = 0
    head_hash: str = GENESIS_HASH
    event_id: int | None = None
    seq: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem

    def __str__(self) -> str:
        if self.ok:
            return f"OK {self.chain_key}: {self.count} events, head {self.head_hash}"
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


def verify_chains(*, organization_ids: Iterable[int] | None = None) -> list[ChainReport]:
    """One report per chain; `organization_ids=None` means every chain."""
    org_ids = None if organization_ids is None else [int(i) for i in organization_ids]
    heads_qs = AuditChainHead.objects.all()
    if org_ids is not None:
        # Every chain of these organizations: "org:<id>" and its shards "org:<id>:<n>".
        heads_qs = heads_qs.filter(org_chains_q(org_ids))
    heads = {head.chain_key: head for head in heads_qs}

    reports: list[ChainReport] = []
    report: ChainReport | None = None
    expected_seq, prev_hash, broken = 1, GENESIS_HASH, False
    for row in _rows(org_ids):
        key = str(row["chain_key"])
        if report is None or key != report.chain_key:
            if report is not None:
                _finish(report, heads, expected_seq - 1, broken)
            report = ChainReport(chain_key=key)
            reports.append(report)
            expected_seq, prev_hash, broken = 1, GENESIS_HASH, False
        if broken:
            continue
        problem = _row_problem(row, expected_seq, prev_hash)
        if problem:
            report.event_id, report.seq = int(str(row["id"])), int(str(row["seq"]))
            report.problem = problem
            broken = True
            continue
        report.count += 1
        report.head_hash = prev_hash = str(row["hash"])
        expected_seq += 1
    if report is not None:
        _finish(report, heads, expected_seq - 1, broken)
    return reports + _headless_reports(heads)
