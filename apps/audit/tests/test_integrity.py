"""Append-only triggers, concurrent chain writers and tamper detection."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction
from pytest_django.fixtures import Settings

from apps.audit.actions import REGISTRY
from apps.audit.chain import GENESIS_HASH
from apps.audit.models import AuditChainHead, AuditEvent
from apps.audit.services import audit_record
from apps.audit.verify import verify_chains
from apps.organizations.models import Organization

APP_ROLE = "grantry_app_role_test"


@contextmanager
def triggers_disabled() -> Iterator[Any]:
    """What a superuser would do to tamper: switch the user triggers off."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")


def raw(sql: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def raw_as(role: str, sql: str) -> None:
    """One statement as `role`, in a transaction of its own."""
    with transaction.atomic():
        raw(f"SET LOCAL ROLE {role}")
        raw(sql)


# Distinct registered names for events whose names only need to differ.
NAMES = list(REGISTRY)


def _ids(org: Organization, n: Any) -> Any:
    return [audit_record(action=NAMES[i], organization=org).pk for i in range(n)]


# --- append-only -------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET action = 'x'",
        "DELETE FROM audit_auditevent",
    ],
)
def test_update_and_delete_are_rejected_for_the_connection_user(
    org: Organization, statement: str
) -> None:
    _ids(org, 2)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        raw(statement)
    assert AuditEvent.objects.filter(organization=org).count() == 2
    assert set(AuditEvent.objects.values_list("action", flat=True)) == set(NAMES[:2])


@pytest.fixture
def app_role(db: None) -> Iterator[Any]:  # noqa: ARG001 - database access
    """A non-superuser role with full table privileges, as production's app user is."""
    raw(f"DROP ROLE IF EXISTS {APP_ROLE}")
    raw(f"CREATE ROLE {APP_ROLE} NOSUPERUSER")
    raw(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {APP_ROLE}")
    yield APP_ROLE
    raw("RESET ROLE")
    raw(f"DROP OWNED BY {APP_ROLE}")
    raw(f"DROP ROLE {APP_ROLE}")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET reason = 'rewritten'",
        "DELETE FROM audit_auditevent",
        "TRUNCATE audit_auditevent",
    ],
)
def test_update_delete_truncate_are_rejected_for_the_application_role(
    org: Organization, app_role: Any, statement: str
) -> None:
    _ids(org, 3)
    with pytest.raises(DatabaseError, match="append-only"):
        raw_as(app_role, statement)
    assert AuditEvent.objects.filter(organization=org).count() == 3
    assert not AuditEvent.objects.exclude(reason="").exists()


@pytest.mark.django_db
def test_the_application_role_can_still_append(org: Organization, app_role: Any) -> None:
    with transaction.atomic():
        raw(f"SET LOCAL ROLE {app_role}")
        audit_record(action="org.updated", organization=org)
    assert AuditEvent.objects.filter(action="org.updated").count() == 1


# --- concurrency -------------------------------------------------------------


@pytest.mark.usefixtures("transactional_db")
def test_concurrent_writers_never_fork_or_break_the_chain(org: Organization) -> None:
    threads, per_thread = 20, 25
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                audit_record(action=NAMES[n], organization_id=org.pk, metadata={"i": i})
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=write, args=(n,)) for n in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert errors == []

    total = threads * per_thread
    chains: dict[str, list[tuple[int, str, str]]] = {}
    for key, seq, prev_hash, digest in (
        AuditEvent.objects.filter(organization=org)
        .order_by("chain_key", "seq")
        .values_list("chain_key", "seq", "prev_hash", "hash")
    ):
        chains.setdefault(key, []).append((seq, prev_hash, digest))
    assert sum(len(events) for events in chains.values()) == total
    # Every chain of the organization is unforked: seq 1..n, each link to the one before.
    for key, events in chains.items():
        assert key == f"org:{org.pk}" or key.startswith(f"org:{org.pk}:")
        assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1))
        prev = GENESIS_HASH
        for _seq, prev_hash, digest in events:
            assert prev_hash == prev
            prev = digest
        head = AuditChainHead.objects.get(chain_key=key)
        assert (head.seq, head.hash) == (len(events), prev)
    reports = verify_chains(organization_ids=[org.pk])
    assert all(r.ok for r in reports), [str(r) for r in reports]
    assert sum(r.count for r in reports) == total


@pytest.mark.usefixtures("transactional_db")
def test_one_organization_spreads_concurrent_appends_over_its_chains(
    org: Organization, settings: Settings
) -> None:
    """A transaction that holds one chain does not make another wait: it appends to
    another of the organization's chains (no single per-organization lock)."""
    settings.GRANTRY_AUDIT_CHAIN_SHARDS = 4
    audit_record(action="org.created", organization_id=org.pk)  # the org's chain exists
    holding, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with transaction.atomic():
                audit_record(action="role.created", organization_id=org.pk)
                holding.set()
                release.wait(10)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    try:
        # This thread's append must not wait for the holder's commit.
        def append_elsewhere() -> None:
            audit_record(action="role.changed", organization_id=org.pk)
            connections.close_all()

        other = threading.Thread(target=append_elsewhere)
        other.start()
        other.join(5)
        assert not other.is_alive(), "the append waited for another transaction's chain"
    finally:
        release.set()
        holder.join()
    assert errors == []
    keys = dict(AuditEvent.objects.filter(organization=org).values_list("action", "chain_key"))
    assert keys["role.created"] != keys["role.changed"]
    assert all(r.ok for r in verify_chains(organization_ids=[org.pk]))


# --- verification ------------------------------------------------------------


@pytest.mark.django_db
def test_verify_reports_ok_with_count_and_head(
    org: Organization, other_org: Organization, capsys: pytest.CaptureFixture[str]
) -> None:
    _ids(org, 5)
    _ids(other_org, 2)
    head = AuditChainHead.objects.get(chain_key=f"org:{org.pk}")
    call_command("audit_verify", "--org", org.slug)
    out = capsys.readouterr().out
    assert f"OK org:{org.pk}: 5 events, head {head.hash}" in out
    assert f"org:{other_org.pk}" not in out
    call_command("audit_verify")
    assert f"OK org:{other_org.pk}: 2 events" in capsys.readouterr().out


@pytest.mark.django_db
def test_verify_names_an_edited_event(
    org: Organization, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _ids(org, 6)
    with triggers_disabled():
        raw("UPDATE audit_auditevent SET reason = 'nothing to see' WHERE id = %s", [ids[3]])
    with pytest.raises(CommandError):
        call_command("audit_verify", "--org", org.slug)
    err = capsys.readouterr().err
    assert f"event id={ids[3]} seq=4" in err
    assert "edited" in err


@pytest.mark.django_db
def test_verify_detects_an_edit_that_also_recomputes_that_events_hash(org: Organization) -> None:
    """A careful forger rewrites the hash too: the NEXT link then breaks."""
    from apps.audit.chain import event_hash

    ids = _ids(org, 4)
    event = AuditEvent.objects.get(pk=ids[1])
    values = {**event.__dict__, "reason": "forged"}
    with triggers_disabled():
        raw(
            "UPDATE audit_auditevent SET reason = 'forged', hash = %s WHERE id = %s",
            [event_hash(values), ids[1]],
        )
    [report] = verify_chains(organization_ids=[org.pk])
    assert (report.event_id, report.seq) == (ids[2], 3)
    assert "prev_hash" in report.problem


@pytest.mark.django_db
def test_verify_names_the_event_after_a_deleted_one(org: Organization) -> None:
    ids = _ids(org, 6)
    with triggers_disabled():
        raw("DELETE FROM audit_auditevent WHERE id = %s", [ids[2]])
    [report] = verify_chains(organization_ids=[org.pk])
    assert not report.ok
    assert (report.event_id, report.seq) == (ids[3], 4)
    assert "expected seq 3" in report.problem
    assert report.count == 2


@pytest.mark.django_db
def test_verify_detects_a_deleted_tail_against_the_head(org: Organization) -> None:
    ids = _ids(org, 4)
    with triggers_disabled():
        raw("DELETE FROM audit_auditevent WHERE id = %s", [ids[-1]])
    [report] = verify_chains(organization_ids=[org.pk])
    assert not report.ok
    assert report.event_id is None
    assert "head records seq 4" in report.problem


@pytest.mark.django_db
def test_verify_names_the_first_of_two_reordered_events(org: Organization) -> None:
    ids = _ids(org, 6)
    # Swap the positions of events 2 and 5 (seq is unique: go through a free value).
    with triggers_disabled():
        raw("UPDATE audit_auditevent SET seq = -1 WHERE id = %s", [ids[1]])
        raw("UPDATE audit_auditevent SET seq = 2 WHERE id = %s", [ids[4]])
        raw("UPDATE audit_auditevent SET seq = 5 WHERE id = %s", [ids[1]])
    [report] = verify_chains(organization_ids=[org.pk])
    assert not report.ok
    assert (report.event_id, report.seq) == (ids[4], 2)
    assert report.count == 1


@pytest.mark.django_db
def test_a_tampered_chain_does_not_hide_other_chains(
    org: Organization, other_org: Organization
) -> None:
    ids = _ids(org, 3)
    _ids(other_org, 3)
    with triggers_disabled():
        raw("UPDATE audit_auditevent SET action = 'x' WHERE id = %s", [ids[0]])
    reports = {r.chain_key: r for r in verify_chains()}
    assert not reports[f"org:{org.pk}"].ok
    assert reports[f"org:{org.pk}"].event_id == ids[0]
    assert reports[f"org:{other_org.pk}"].ok
    assert reports[f"org:{other_org.pk}"].count == 3
