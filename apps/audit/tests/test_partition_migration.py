"""Migration 0010 on a database that already holds events: the plain table becomes the
month-partitioned one with every row, the identity, the indexes, the triggers and the
one-statement append; and back."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from apps.audit.services import audit_record
from apps.audit.verify import verify_chains
from apps.organizations.models import Organization

BEFORE = ("audit", "0009_outcome_pending_refused_decision_approval")


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


def rows() -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM audit_auditevent ORDER BY id")
        return cursor.fetchall()


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_events_indexes_triggers_and_the_append() -> None:
    org = Organization.objects.create(name="Before", slug="before")
    try:
        migrate([BEFORE])
        plain = table_shape()
        assert plain["kind"] == "r"
        for n in range(5):
            audit_record(action="org.updated", organization=org, metadata={"n": n})
        audit_record(action="org.updated")  # the global chain
        before = rows()

        migrate(latest())

        partitioned = table_shape()
        assert partitioned["kind"] == "p"
        assert partitioned["indexes"] == plain["indexes"]
        assert partitioned["triggers"] == plain["triggers"]
        assert rows() == before
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
        kept = rows()
        migrate([BEFORE])
        assert table_shape() == plain
        assert rows() == kept
        assert all(report.ok for report in verify_chains())
    finally:
        migrate(latest())
        call_command("flush", verbosity=0, interactive=False)
