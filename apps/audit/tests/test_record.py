from __future__ import annotations

import pytest
from pytest_django.fixtures import Settings

from apps.audit.chain import GENESIS_HASH, event_hash
from apps.audit.models import AuditEvent, AuditImmutableError
from apps.audit.services import audit_record
from apps.organizations.models import Organization


@pytest.mark.django_db
def test_events_chain_per_organization(org: Organization, other_org: Organization) -> None:
    first = audit_record(action="org.created", organization=org)
    second = audit_record(action="member.invited", organization=org, metadata={"role": "admin"})
    elsewhere = audit_record(action="org.created", organization=other_org)

    assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert (elsewhere.seq, elsewhere.prev_hash) == (1, GENESIS_HASH)
    stored = AuditEvent.objects.get(pk=second.pk)
    assert event_hash(stored.__dict__) == stored.hash


@pytest.mark.django_db
def test_events_cannot_be_updated_or_deleted_through_the_orm(org: Organization) -> None:
    event = audit_record(action="org.created", organization=org)
    event.action = "something.else"
    with pytest.raises(AuditImmutableError):
        event.save()
    with pytest.raises(AuditImmutableError):
        event.delete()
    with pytest.raises(AuditImmutableError):
        AuditEvent.objects.filter(pk=event.pk).update(action="x")
    with pytest.raises(AuditImmutableError):
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "org.created"


@pytest.mark.django_db
def test_unknown_fields_are_refused_and_nothing_is_written(org: Organization) -> None:
    with pytest.raises(TypeError):
        audit_record(action="org.updated", organization=org, secret="nope")
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_database_links_the_chain_with_the_python_formula(org: Organization) -> None:
    """The append computes the link hash in SQL; chain.event_hash (what audit_verify
    and the offline verifier use) must give the same value for every event."""
    from apps.audit.verify import verify_chains

    for _ in range(3):
        audit_record(action="org.updated", organization=org, metadata={"k": [1, "two"], "x": "é"})
    stored = list(AuditEvent.objects.filter(organization=org).order_by("seq"))
    assert [e.seq for e in stored] == [1, 2, 3]
    assert stored[1].prev_hash == stored[0].hash
    assert stored[2].prev_hash == stored[1].hash
    for event in stored:
        assert event_hash(event.__dict__) == event.hash
    reports = verify_chains(organization_ids=[org.pk])
    assert all(r.ok for r in reports), reports


def test_requests_are_not_wrapped_in_a_transaction(settings: Settings) -> None:
    """The broker's outcome event skips the flush wait for its own transaction only
    because each request runs in autocommit; ATOMIC_REQUESTS would widen that to the
    whole request."""
    assert settings.DATABASES["default"]["ATOMIC_REQUESTS"] is False
