"""CSV and JSON Lines encodings of audit events, streamed in keyset chunks.

Memory stays flat however many rows: rows are read `CHUNK_SIZE` at a time by
keyset (`id > last`, never OFFSET) and each chunk is encoded and yielded
before the next is read."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from django.db import connections
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

from apps.audit.fields import BY_NAME, EXPORTED
from apps.audit.models import AuditEvent, ExportFormat

CHUNK_SIZE = 2000
# The one list of audit fields (apps.audit.fields), in the model's order.
COLUMNS = EXPORTED
# A spreadsheet evaluates a cell starting with these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CONTENT_TYPES: dict[str, str] = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.JSONL: "application/x-ndjson; charset=utf-8",
}


def rows(events: QuerySet[AuditEvent], *, chunk_size: int | None = None) -> Iterator[tuple]:
    """Every row of `events` (a tuple of COLUMNS) in id order, by keyset chunks."""
    yield from _chunked(events.values_list(*COLUMNS), chunk_size or CHUNK_SIZE)


def _chunked(base: QuerySet[Any], chunk_size: int) -> Iterator[tuple]:
    last_id = 0
    base = base.order_by("id")
    while True:
        chunk = list(base.filter(id__gt=last_id)[:chunk_size])
        if not chunk:
            return
        yield from chunk
        last_id = chunk[-1][0]
        if len(chunk) < chunk_size:
            return


# The JSON line is built by the database: decoding jsonb and
# timestamps into Python objects only to encode them again was most of the cost.
_PG_LINE = "json_build_object({})::text".format(
    ", ".join(f'\'{name}\', "audit_auditevent"."{name}"' for name in COLUMNS)
)


def jsonl_lines(events: QuerySet[AuditEvent], *, chunk_size: int | None = None) -> Iterator[str]:
    """One JSON text per event, built in PostgreSQL."""
    base = events.annotate(line=RawSQL(_PG_LINE, ())).values_list("id", "line")  # noqa: S611 - fixed SQL built from the field list, no input
    return (line for _, line in _chunked(base, chunk_size or CHUNK_SIZE))


# CSV is built by PostgreSQL too: one COPY ... TO STDOUT (FORMAT csv) per
# keyset chunk, read through psycopg's copy API. Each cell is formatted like
# encode_csv's (ISO 8601 UTC times, neutralised formulas, "" as an empty cell);
# metadata is jsonb's own text (the same JSON, in jsonb's key order). Records end
# in "\n" here and "\r\n" from encode_csv; CSV readers take both.
CSV_CHUNK_SIZE = 10_000
_FORMULA_START = ", ".join(f"chr({ord(c)})" if c in "\t\r" else f"'{c}'" for c in FORMULA_PREFIXES)


def _pg_csv_cell(name: str) -> str:
    column = f'"audit_auditevent"."{name}"'
    kind = BY_NAME[name].kind
    if kind == "time":
        utc = f"({column} AT TIME ZONE 'UTC')"
        # As datetime.isoformat(): microseconds only when there are some.
        return (
            f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || "
            f"CASE WHEN mod(date_part('microseconds', {utc})::bigint, 1000000) = 0 THEN '' "
            f"ELSE to_char({utc}, '.US') END || '+00:00'"
        )
    if kind == "json":
        return f"{column}::text"
    if kind == "ip":
        return f"host({column})"
    if kind == "text":
        # Formula neutralisation, and NULL for "" so the cell is empty, not "".
        return (
            f"NULLIF(CASE WHEN left({column}, 1) IN ({_FORMULA_START}) "
            f"THEN '''' || {column} ELSE {column} END, '')"
        )
    return f"{column}::text"


_PG_CSV_CELLS = {f"csv_{name}": _pg_csv_cell(name) for name in COLUMNS}


class CSVChunk(str):
    """Encoded rows that know how many rows they hold (for a job's progress)."""

    rows: int = 0


def csv_chunks(
    events: QuerySet[AuditEvent], *, chunk_size: int | None = None
) -> Iterator[CSVChunk]:
    """The whole CSV, header first, built by PostgreSQL."""
    return _copy_chunks(events, chunk_size or CSV_CHUNK_SIZE)


def _copy_chunks(events: QuerySet[AuditEvent], chunk_size: int) -> Iterator[CSVChunk]:
    header = CSVChunk(",".join(COLUMNS) + "\n")
    yield header  # rows = 0
    base = events.order_by("id")
    cells = base.annotate(**{k: RawSQL(v, ()) for k, v in _PG_CSV_CELLS.items()})  # noqa: S611 - fixed SQL, no input
    connection = connections[events.db]
    last_id = 0
    while True:
        # The chunk's last id first, so each COPY is a bounded keyset range that ends
        # before its text is handed on: the connection is free between chunks.
        ahead = base.filter(id__gt=last_id).values_list("id", flat=True)
        bound = ahead[chunk_size - 1 : chunk_size].first()
        chunk = cells.filter(id__gt=last_id)
        if bound is not None:
            chunk = chunk.filter(id__lte=bound)
        sql, params = chunk.values_list(*_PG_CSV_CELLS).query.sql_with_params()
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", params) as copy,
        ):
            text = b"".join(bytes(block) for block in copy).decode()
        if text:
            piece = CSVChunk(text)
            piece.rows = chunk_size if bound is not None else chunk.count()
            yield piece
        if bound is None:
            return
        last_id = bound


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


def join_lines(lines: Iterable[str], *, rows_per_chunk: int = CHUNK_SIZE) -> Iterator[str]:
    pending: list[str] = []
    for line in lines:
        pending.append(line)
        if len(pending) >= rows_per_chunk:
            yield "\n".join(pending) + "\n"
            pending = []
    if pending:
        yield "\n".join(pending) + "\n"


def export_stream(
    fmt: str,
    events: QuerySet[AuditEvent],
    progress: Callable[[Iterator[Any]], Iterator[Any]] | None = None,
) -> Iterator[str]:
    """The encoded export of `events`; `progress` wraps the per-row iterator."""
    wrap = progress or (lambda it: it)
    if fmt == ExportFormat.JSONL:
        return join_lines(wrap(jsonl_lines(events)))
    return wrap(csv_chunks(events))


def filename(organization: Any, fmt: str, suffix: str = "") -> str:
    return f"audit-{organization.slug}{suffix}.{fmt}"
