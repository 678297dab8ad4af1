import pytest

from apps.audit.services import audit_record


@pytest.mark.django_db
def test_audit_list_names_the_saas_action_of_broker_events(client, reviewer, org):
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
