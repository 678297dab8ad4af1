"""audit_verify on real events (the tampering tests are in test_integrity.py)."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from apps.audit.models import AuditChainHead
from apps.audit.services import audit_record
from apps.audit.verify import verify_chains
from apps.organizations.models import Organization

pytestmark = pytest.mark.django_db


def test_verify_accepts_real_events_of_every_shape(
    org: Organization, capsys: pytest.CaptureFixture[str]
) -> None:
    audit_record(
        action="org.created",
        organization=org,
        target=org,
        metadata={"nested": {"b": [1, 2.5, None], "a": "é"}},
        ip="2001:db8::1",
    )
    audit_record(
        action="broker.execute",
        organization=org,
        decision="denied",
        worker_id=3,
        token_id="tok_x",
        connection_id=4,
        provider="github",
        upstream_status=None,
        latency_ms=12,
        reason="No rule allows it",
        user_agent="agent/1",
    )
    call_command("audit_verify", "--org", org.slug)
    head = AuditChainHead.objects.get(chain_key=f"org:{org.pk}")
    assert f"OK org:{org.pk}: 2 events, head {head.hash}" in capsys.readouterr().out


def test_verify_catches_a_head_that_does_not_match(org: Organization) -> None:
    audit_record(action="role.created", organization=org)
    audit_record(action="role.changed", organization=org)
    AuditChainHead.objects.filter(chain_key=f"org:{org.pk}").update(seq=3)
    [report] = verify_chains(organization_ids=[org.pk])
    assert not report.ok
    assert "head records seq 3" in report.problem
    with pytest.raises(CommandError):
        call_command("audit_verify", "--org", org.slug)


@pytest.mark.usefixtures("db")
def test_unknown_org_is_a_clear_error() -> None:
    with pytest.raises(CommandError, match="No organization"):
        call_command("audit_verify", "--org", "nope")


def test_a_shard_whose_head_row_is_gone_is_still_verified_and_reported(
    org: Organization, other_org: Organization
) -> None:
    from apps.audit.tests.test_proof import shard_event

    audit_record(action="org.created", organization=org)
    shard_event(org, 2)
    shard_event(other_org, 2)
    base = f"org:{org.pk}"
    assert {r.chain_key for r in verify_chains(organization_ids=[org.pk])} == {
        base,
        f"{base}:2",
    }
    AuditChainHead.objects.filter(pk=f"{base}:2").delete()
    reports = {r.chain_key: r for r in verify_chains(organization_ids=[org.pk])}
    assert set(reports) == {base, f"{base}:2"}
    assert reports[base].ok
    assert reports[f"{base}:2"].problem == "events exist but the chain has no head record"
