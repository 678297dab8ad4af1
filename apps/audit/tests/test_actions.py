"""The writer refuses an audit action that is not in the registry (apps/audit/actions.py),
and the change it would have recorded does not happen."""

from __future__ import annotations

import pytest
from django.db import transaction

from apps.audit import actions
from apps.audit.actions import UnregisteredAuditAction
from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.inventory.models import FindingState
from apps.organizations.models import Organization


@pytest.mark.django_db
def test_an_unregistered_action_is_refused_and_the_change_rolls_back(org: Organization) -> None:
    before = AuditEvent.objects.filter(organization_id=org.pk).count()

    def rename_quietly() -> None:
        with transaction.atomic():
            Organization.objects.filter(pk=org.pk).update(name="Renamed")
            audit_record(action="org.renamed_quietly", organization=org)

    with pytest.raises(UnregisteredAuditAction, match=r"'org\.renamed_quietly'"):
        rename_quietly()
    org.refresh_from_db()
    assert org.name != "Renamed"
    assert AuditEvent.objects.filter(organization_id=org.pk).count() == before


@pytest.mark.django_db
def test_a_registered_action_is_written(org: Organization) -> None:
    event = audit_record(action="org.updated", organization=org)
    assert event is not None
    assert actions.get(event.action) is actions.REGISTRY["org.updated"]


def test_every_finding_state_has_its_action() -> None:
    # apps/inventory/services.py writes f"inventory.finding_{state}".
    for state in FindingState.values:
        assert f"inventory.finding_{state}" in actions.REGISTRY
    registered = {n for n in actions.REGISTRY if n.startswith("inventory.finding_")}
    assert registered == {f"inventory.finding_{s}" for s in FindingState.values}
