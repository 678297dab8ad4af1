"""CSV and JSON Lines encodings of audit events, streamed in keyset chunks.

Memory stays flat however many rows: rows are read `CHUNK_SIZE` at a time by
keyset (`id > last`, never OFFSET) and each chunk is encoded and yielded
before the next is read."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from apps.audit.models import AuditEvent, ExportFormat

CHUNK_SIZE = 2000
COLUMNS = (
    "id",
    "created_at",
    "organization_id",
    "chain_key",
    "seq",
    "action",
    "outcome",
    "decision",
    "actor_type",
    "actor_id",
    "actor_label",
    "target_type",
    "target_id",
    "target_label",
    "worker_id",
    "token_id",
    "connection_id",
    "provider",
    "upstream_status",
    "latency_ms",
    "reason",
    "metadata",
    "ip",
    "user_agent",
    "request_id",
    "prev_hash",
    "hash",
)
# A spreadsheet evaluates a cell starting with these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CONTENT_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.JSONL: "application/x-ndjson; charset=utf-8",
}


def rows(events: QuerySet[AuditEvent], *, chunk_size: int = CHUNK_SIZE) -> Iterator[tuple]:
    """Every row of `events` in id order, by keyset chunks."""
    last_id = 0
    base = events.order_by("id").values_list(*COLUMNS)
    while True:
        chunk = list(base.filter(id__gt=last_id)[:chunk_size])
        if not chunk:
            return
        yield from chunk
        last_id = chunk[-1][0]
        if len(chunk) < chunk_size:
            return


def _text(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value


def neutralise(value: Any) -> Any:
    """Make a CSV cell inert for spreadsheets: text starting like a formula gets a '."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def encode_csv(source: Iterable[tuple], *, rows_per_chunk: int = CHUNK_SIZE) -> Iterator[str]:
    buffer = io.StringIO()
    # QUOTE_MINIMAL quotes any cell holding a delimiter, quote or newline, so
    # embedded line breaks stay inside their record.
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    pending = 0
    for row in source:
        writer.writerow([neutralise(_text(value)) for value in row])
        pending += 1
        if pending >= rows_per_chunk:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    yield buffer.getvalue()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def encode_jsonl(source: Iterable[tuple], *, rows_per_chunk: int = CHUNK_SIZE) -> Iterator[str]:
    # json.dumps escapes newlines inside strings, so one event is one line.
    lines: list[str] = []
    for row in source:
        lines.append(
            json.dumps(
                dict(zip(COLUMNS, row, strict=True)),
                default=_json_default,
                ensure_ascii=False,
                separators=(",", ":"),
            )
        )
        if len(lines) >= rows_per_chunk:
            yield "\n".join(lines) + "\n"
            lines = []
    if lines:
        yield "\n".join(lines) + "\n"


def encode(fmt: str, source: Iterable[tuple]) -> Iterator[str]:
    return encode_csv(source) if fmt == ExportFormat.CSV else encode_jsonl(source)


def filename(organization: Any, fmt: str, suffix: str = "") -> str:
    return f"audit-{organization.slug}{suffix}.{fmt}"
