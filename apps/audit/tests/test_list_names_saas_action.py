from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.audit.services import audit_record
from apps.organizations.models import Organization


@pytest.mark.django_db
def test_audit_list_names_the_saas_action_of_broker_events(
    client: Client, reviewer: User, org: Organization
) -> None:
    audit_record(
        action="broker.execute",
        organization=org,
        decision="denied",
        metadata={"action": "sandbox.delete_task"},
        reason="no rule",
    )
    client.force_login(reviewer)
    page = client.get(f"/o/{org.slug}/audit/").content.decode()
    assert "sandbox.delete_task" in page
