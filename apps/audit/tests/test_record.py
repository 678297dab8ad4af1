import pytest

from apps.audit.chain import GENESIS_HASH, event_hash
from apps.audit.models import AuditEvent, AuditImmutableError
from apps.audit.services import audit_record


@pytest.mark.django_db
def test_events_chain_per_organization(org, other_org):
    first = audit_record(action="org.created", organization=org)
    second = audit_record(action="member.invited", organization=org, metadata={"role": "admin"})
    elsewhere = audit_record(action="org.created", organization=other_org)

    assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert (elsewhere.seq, elsewhere.prev_hash) == (1, GENESIS_HASH)
    stored = AuditEvent.objects.get(pk=second.pk)
    assert event_hash(stored.__dict__) == stored.hash


@pytest.mark.django_db
def test_events_cannot_be_updated_or_deleted_through_the_orm(org):
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
def test_unknown_fields_are_refused_and_nothing_is_written(org):
    with pytest.raises(TypeError):
        audit_record(action="x", organization=org, secret="nope")
    assert not AuditEvent.objects.exists()
