"""Migration 0010 on a database that already holds events: the plain table becomes the
month-partitioned one with every row, the identity, the indexes, the triggers and the
one-statement append; and back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from apps.audit.services import audit_record
from apps.audit.verify import verify_chains
from apps.organizations.models import Organization

BEFORE = ("audit", "0009_outcome_pending_refused_decision_approval")
# Indexes migrations after 0010 add (they are not 0010's to keep).
LATER_INDEXES = {"audit_org_on_behalf_of_id"}


def migrate(target: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)


def latest() -> list[tuple[str, str]]:
    executor = MigrationExecutor(connection)
    return [key for key in executor.loader.graph.leaf_nodes() if key[0] == "audit"]


def table_shape() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'audit_auditevent' ORDER BY 1"
        )
        indexes = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_auditevent'::regclass "
            "AND NOT tgisinternal ORDER BY 1"
        )
        triggers = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = 'audit_auditevent'")
        kind = cursor.fetchone()[0]
    return {"indexes": indexes, "triggers": triggers, "kind": kind}


def columns() -> list[str]:
    with connection.cursor() as cursor:
        return [
            c.name
            for c in connection.introspection.get_table_description(cursor, "audit_auditevent")
        ]


def rows(names: list[str]) -> list[tuple[Any, ...]]:
    """The rows, as the columns `names` (those of the table before migration 0010)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(names)} FROM audit_auditevent ORDER BY id")
        return cursor.fetchall()


@contextmanager
def later_columns() -> Iterator[None]:
    """Today's writer and ORM on the table as it was before 0010: the columns the model
    gained in later migrations (empty, as on every row written before them) are there
    for the block, and gone again after it."""
    from apps.audit.models import AuditEvent

    present = set(columns())
    later = [f for f in AuditEvent._meta.concrete_fields if f.column not in present]
    with connection.schema_editor() as editor:
        for field in later:
            editor.add_field(AuditEvent, field)
    try:
        yield
    finally:
        with connection.schema_editor() as editor:
            for field in later:
                editor.remove_field(AuditEvent, field)


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_events_indexes_triggers_and_the_append() -> None:
    org = Organization.objects.create(name="Before", slug="before")
    try:
        migrate([BEFORE])
        plain = table_shape()
        assert plain["kind"] == "r"
        names = columns()
        with later_columns():
            for n in range(5):
                audit_record(action="org.updated", organization=org, metadata={"n": n})
            audit_record(action="org.updated")  # the global chain
        before = rows(names)

        migrate(latest())

        partitioned = table_shape()
        assert partitioned["kind"] == "p"
        assert [i for i in partitioned["indexes"] if i not in LATER_INDEXES] == plain["indexes"]
        assert partitioned["triggers"] == plain["triggers"]
        assert rows(names) == before
        assert all(report.ok for report in verify_chains())
        # The append goes on, ids after the old ones, in the same chains.
        event = audit_record(action="org.updated", organization=org)
        assert event is not None
        assert event.pk > before[-1][0]
        assert event.seq == 6
        assert all(report.ok for report in verify_chains())
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("UPDATE audit_auditevent SET reason = 'edited'")

        # And back: the plain table with every row.
        kept = rows(names)
        migrate([BEFORE])
        assert table_shape() == plain
        assert rows(names) == kept
        with later_columns():
            assert all(report.ok for report in verify_chains())
    finally:
        migrate(latest())
        call_command("flush", verbosity=0, interactive=False)
