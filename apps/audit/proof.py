"""Exports that prove themselves: chain links on every row and a signed checkpoint.

A proof export is a contiguous slice of each of the organization's chains
(shard 0 "org:<id>" and shards "org:<id>:<n>"): every event of a chain from the
first one created at or after `start` to the last one created at or before
`end`, grouped by chain and in seq order. Time alone cannot cut a chain
cleanly (an event's time is taken before its writer gets the chain's lock),
so the slice is cut by seq and may reach a few events past either end.

Each row carries chain_key, seq, prev_hash, hash and content_digest next to
the event's fields, as the chain hashed them (created_at in its canonical
text). The last line is the checkpoint: per chain the slice's first and last
links and the chain's head when the export started, signed with the
organization's Ed25519 key (`apps.audit.signing`). `apps.audit.offline`
checks it all without database access."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db.models import Max, Min, QuerySet
from django.utils import timezone

from apps.audit import offline
from apps.audit.chain import GENESIS_HASH, TIME_FIELDS, content_digest
from apps.audit.exports import COLUMNS, FORMULA_PREFIXES
from apps.audit.models import AuditChainHead, AuditEvent, ExportFormat
from apps.audit.verify import hashing_rows, org_chains_q

PROOF_COLUMNS = (*COLUMNS, "content_digest")
# Filters a contiguous slice can honour; any other filter would leave gaps.
PROOF_FILTERS = frozenset({"start", "end"})


class ProofFilterError(ValueError):
    """A proof export was asked for with a filter that would cut holes in the chain."""


def check_proof_filter(params: dict[str, str]) -> None:
    extra = sorted(set(params) - PROOF_FILTERS)
    if extra:
        raise ProofFilterError(
            "An export with proof is a contiguous slice of the trail: filter it only by "
            f"time (start, end), not by {', '.join(extra)}."
        )


def owner_id(organization: Any) -> Any:
    """The organization's id; None for the global chain (events of no organization),
    whose archives the installation's key signs."""
    return organization.pk if organization is not None else None


def chain_heads(organization: Any) -> list[AuditChainHead]:
    """Every chain head of the organization, shard 0 first."""
    return sorted(
        AuditChainHead.objects.filter(org_chains_q([owner_id(organization)])),
        key=lambda head: _shard_order(head.chain_key),
    )


def _shard_order(chain_key: str) -> tuple[int, str]:
    shard = chain_key.split(":")[2:]
    return (int(shard[0]) if shard and shard[0].isdigit() else 0, chain_key)


def _seq_ranges(
    organization: Any, heads: list[AuditChainHead], start: datetime | None, end: datetime | None
) -> dict[str, tuple[int, int]]:
    from apps.audit.archives import archived_through

    archived = archived_through(owner_id(organization))
    if start is None and end is None:  # the whole trail: no need to scan it
        return {
            head.chain_key: (archived.get(head.chain_key, (0, ""))[0] + 1, head.seq)
            for head in heads
            if head.seq > archived.get(head.chain_key, (0, ""))[0]
        }
    events = AuditEvent.objects.filter(organization=organization)
    if start is not None:
        events = events.filter(created_at__gte=start)
    if end is not None:
        events = events.filter(created_at__lte=end)
    found = {
        row["chain_key"]: (row["first"], row["last"])
        for row in events.order_by().values("chain_key").annotate(first=Min("seq"), last=Max("seq"))
    }
    ranges = {}
    for head in heads:
        if head.chain_key in found:
            first, last = found[head.chain_key]
            # What is archived is in the archive store (apps.audit.history): the slice
            # goes on from there, so the archives and this export join without overlap.
            first = max(first, archived.get(head.chain_key, (0, ""))[0] + 1)
            # Appended after the export began: left to a later export.
            last = min(last, head.seq)
            if first <= last:
                ranges[head.chain_key] = (first, last)
    return ranges


def _slice(chain_key: str, first: int, last: int) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(chain_key=chain_key, seq__gte=first, seq__lte=last).order_by(
        "seq"
    )


def _canonical_time(value: Any) -> str:
    # What hashing_rows gives (text); a datetime read through the ORM is formatted alike.
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    return str(value)


def proof_rows(
    organization: Any,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    ranges: dict[str, tuple[int, int]] | None = None,
    archive: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Event rows (dicts of PROOF_COLUMNS), then one {"grantry_checkpoint": …} dict.

    `ranges` ({chain_key: (first seq, last seq)}) cuts the slice by seq directly instead
    of by time; `archive` is signed into the checkpoint as what the file archives
    (apps.audit.archive)."""
    from apps.audit.signing import sign, signing_key

    key = signing_key(organization)
    heads = chain_heads(organization)
    if ranges is None:
        ranges = _seq_ranges(organization, heads, start, end)
    chains: list[dict[str, Any]] = []
    for head in heads:
        entry: dict[str, Any] = {
            "chain_key": head.chain_key,
            "count": 0,
            "first_seq": None,
            "first_prev_hash": None,
            "last_seq": None,
            "last_hash": None,
            "head_seq": head.seq,
            "head_hash": head.hash,
        }
        chains.append(entry)
        if head.chain_key not in ranges:
            continue
        for values in hashing_rows(_slice(head.chain_key, *ranges[head.chain_key])):
            for name in TIME_FIELDS:
                if values[name] is not None:
                    values[name] = _canonical_time(values[name])
            values["content_digest"] = content_digest(values)
            if entry["first_seq"] is None:
                entry["first_seq"], entry["first_prev_hash"] = values["seq"], values["prev_hash"]
            entry["last_seq"], entry["last_hash"] = values["seq"], values["hash"]
            entry["count"] += 1
            yield {name: values.get(name) for name in PROOF_COLUMNS}
    body = {
        "format": offline.CHECKPOINT_FORMAT,
        "organization": getattr(organization, "slug", ""),
        "organization_id": owner_id(organization),
        "issued_at": timezone.now().isoformat(),
        "slice": {
            "start": start.isoformat() if start else None,
            "end": end.isoformat() if end else None,
        },
        **({"archive": archive} if archive is not None else {}),
        "key_id": key.key_id,
        "genesis_hash": GENESIS_HASH,
        "chains": chains,
    }
    key_id, signature = sign(organization, offline.checkpoint_message(body))
    yield {
        offline.CHECKPOINT_KEY: body,
        "key_id": key_id,
        "public_key": key.public_key,
        "signature": signature,
    }


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def proof_stream(
    fmt: str,
    organization: Any,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    rows_per_chunk: int = 2000,
    ranges: dict[str, tuple[int, int]] | None = None,
    archive: dict[str, Any] | None = None,
) -> Iterator[str]:
    """The export with proof, encoded as JSON Lines or CSV, in chunks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    if fmt == ExportFormat.CSV:
        writer.writerow(PROOF_COLUMNS)
    pending = 0
    for row in proof_rows(organization, start=start, end=end, ranges=ranges, archive=archive):
        if offline.CHECKPOINT_KEY in row:
            if fmt == ExportFormat.CSV:
                writer.writerow([offline.CSV_CHECKPOINT_MARK, _json(row)])
            else:
                buffer.write(_json(row) + "\n")
            break
        if fmt == ExportFormat.CSV:
            writer.writerow([_csv_cell(row[name]) for name in PROOF_COLUMNS])
        else:
            buffer.write(_json(row) + "\n")
        pending += 1
        if pending >= rows_per_chunk:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    yield buffer.getvalue()


def signed_checkpoint(organization: Any, positions: dict[str, int]) -> dict[str, Any]:
    """A signed checkpoint of the organization's chains at `positions`
    ({chain_key: seq}, e.g. what a sink has received) and of their current heads:
    published to a SIEM, it makes a later rewrite of the chain contradict it."""
    from apps.audit.signing import sign, signing_key

    key = signing_key(organization)
    chains = []
    for head in chain_heads(organization):
        seq = min(int(positions.get(head.chain_key, 0)), head.seq)
        at = (
            AuditEvent.objects.filter(chain_key=head.chain_key, seq=seq)
            .values_list("hash", flat=True)
            .first()
            if seq
            else GENESIS_HASH
        )
        chains.append(
            {
                "chain_key": head.chain_key,
                "last_seq": seq,
                "last_hash": at,
                "head_seq": head.seq,
                "head_hash": head.hash,
            }
        )
    body = {
        "format": offline.CHECKPOINT_FORMAT,
        "organization": getattr(organization, "slug", ""),
        "organization_id": owner_id(organization),
        "issued_at": timezone.now().isoformat(),
        "key_id": key.key_id,
        "genesis_hash": GENESIS_HASH,
        "chains": chains,
    }
    key_id, signature = sign(organization, offline.checkpoint_message(body))
    return {
        offline.CHECKPOINT_KEY: body,
        "key_id": key_id,
        "public_key": key.public_key,
        "signature": signature,
    }
