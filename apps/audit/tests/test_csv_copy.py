"""CSV exports built by PostgreSQL (COPY ... TO STDOUT) read like the Python encoder's."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.audit import exports
from apps.audit.models import AuditEvent, AuditExport
from apps.audit.services import audit_export_request, audit_export_run, audit_record
from apps.audit.tests.helpers import broker_event
from apps.organizations.models import Organization

pytestmark = pytest.mark.django_db

NASTY = [
    '=HYPERLINK("http://evil.test","x")',
    "+1+2",
    "-2+3",
    "@SUM(A1)",
    "\tleading tab",
    "\rleading cr",
    'line one\nline two, with "quotes", commas;and;semicolons',
    "naïve ✓ ünïcode",
    "'already quoted",
    "",
]


def _parse(text: Any) -> Any:
    return list(csv.reader(io.StringIO(text, newline="")))


def _seed(org: Organization) -> None:
    for i, text in enumerate(NASTY):
        audit_record(
            action="role.changed",
            organization=org,
            target_label=text,
            reason=text,
            actor_label=text,
            metadata={"note": text, "n": i, "nested": {"b": [1, 2.5], "a": None}},
        )
    broker_event(org, ip="10.0.0.7", latency_ms=12, upstream_status=503)
    broker_event(org, ip="2001:db8::1")


def test_postgres_csv_has_the_cells_of_the_python_encoder(org: Organization) -> None:
    _seed(org)
    events = AuditEvent.objects.for_organization(org)
    built = "".join(exports.csv_chunks(events, chunk_size=4))
    python = "".join(exports.encode_csv(exports.rows(events)))
    ours, theirs = _parse(built), _parse(python)
    assert ours[0] == theirs[0] == list(exports.COLUMNS)
    assert len(ours) == len(theirs) == AuditEvent.objects.filter(organization=org).count() + 1
    metadata = exports.COLUMNS.index("metadata")
    for mine, expected in zip(ours[1:], theirs[1:], strict=True):
        assert json.loads(mine[metadata]) == json.loads(expected[metadata])
        mine[metadata] = expected[metadata] = ""
        assert mine == expected


def test_formulas_are_neutralised_and_times_are_iso_utc(org: Organization) -> None:
    audit_record(action="org.updated", organization=org, target_label="=1+1", reason="-5")
    text = "".join(exports.csv_chunks(AuditEvent.objects.for_organization(org)))
    header, row = _parse(text)
    cell = dict(zip(header, row, strict=True))
    assert cell["target_label"] == "'=1+1"
    assert cell["reason"] == "'-5"
    event = AuditEvent.objects.get(action="org.updated")
    assert datetime.fromisoformat(cell["created_at"]) == event.created_at.astimezone(UTC)
    assert cell["created_at"] == event.created_at.astimezone(UTC).isoformat()


def test_chunks_cover_every_row_once_in_id_order(org: Organization) -> None:
    ids = [audit_record(action="org.updated", organization=org).pk for _ in range(11)]
    pieces = list(exports.csv_chunks(AuditEvent.objects.for_organization(org), chunk_size=3))
    assert [p.rows for p in pieces] == [0, 3, 3, 3, 2]
    rows = _parse("".join(pieces))[1:]
    assert [int(r[0]) for r in rows] == ids


@pytest.mark.usefixtures("settings")
def test_a_csv_job_counts_its_rows_and_writes_the_database_built_file(
    org: Organization, reviewer: User
) -> None:
    from django.core.files.storage import default_storage

    _seed(org)
    export = audit_export_request(organization=org, actor=reviewer, params={}, fmt="csv")
    total = AuditEvent.objects.filter(organization=org, id__lt=export.pk + 10**9).count()
    done = audit_export_run(export_id=export.pk)
    assert done.status == "done"
    assert done.rows_done == done.rows_total == total
    with default_storage.open(done.file_path, "rb") as handle:
        rows = _parse(handle.read().decode())
    assert len(rows) == total + 1
    labels = {r[exports.COLUMNS.index("target_label")] for r in rows[1:]}
    assert "'@SUM(A1)" in labels
    assert "@SUM(A1)" not in labels


def test_a_csv_job_reports_progress_by_chunk(
    org: Organization, reviewer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps.audit.services import exports as export_services

    for _ in range(9):
        broker_event(org)
    export = audit_export_request(organization=org, actor=reviewer, params={}, fmt="csv")
    monkeypatch.setattr(export_services, "PROGRESS_EVERY", 2)
    monkeypatch.setattr(exports, "CSV_CHUNK_SIZE", 3)
    seen: list[int] = []
    original = export_services.export_stream

    def watched(fmt: Any, events: Any, progress: Any = None) -> Any:
        def spy(source: Any) -> Iterator[Any]:
            for piece in progress(source):
                seen.append(AuditExport.objects.get(pk=export.pk).rows_done)
                yield piece

        return original(fmt, events, progress=spy)

    monkeypatch.setattr(export_services, "export_stream", watched)
    done = audit_export_run(export_id=export.pk)
    assert seen == [0, 3, 6, 9, 9]  # header, then three rows a chunk, then the last row
    assert (done.rows_done, done.rows_total) == (10, 10)
