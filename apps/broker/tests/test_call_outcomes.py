"""Each ending of an approval-gated call has its own outcome and decision in the
trail, and every page counts calls one way (issue 27, #3): a call waiting for
approval is not a failure, a re-send of a used approval is not a denial, and the
overview, the charts and the role's least-privilege report show the same numbers."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from apps.approvals.models import Approval
from apps.approvals.services import approval_decide
from apps.approvals.tests.conftest import INPUT, make_gated_agent
from apps.audit.models import AuditEvent, Decision, Outcome
from apps.audit.selectors import call_counts
from apps.broker.tests.upstream import RecordingUpstream
from apps.organizations.models import Organization
from apps.policies.least_privilege import least_privilege_report
from apps.review.charts import chart_data


def _post(client: Client, agent: Any, verb: str, action: str, body: Any) -> Any:
    return client.post(
        f"/api/v1/actions/{action}/{verb}",
        json.dumps(body),
        content_type="application/json",
        **agent.headers,
    )


def test_pending_approved_refused_and_denied_calls_are_told_apart_and_counted_alike(
    client: Client,
    org: Organization,
    owner: User,
    member: User,
    admin: User,
    upstream: RecordingUpstream,
) -> None:
    gated = make_gated_agent(org, creator=owner, owner=member)
    delete = "sandbox.delete_task"

    pending = _post(client, gated, "execute", delete, {"input": INPUT})
    assert pending.status_code == 202, pending.content
    approval_id = pending.json()["approval"]["id"]
    event = AuditEvent.objects.filter(action="broker.execute").latest("id")
    assert (event.outcome, event.decision) == (Outcome.PENDING, Decision.APPROVAL)
    assert event.get_outcome_display() == "Waiting for approval"

    approval_decide(approval=Approval.objects.get(public_id=approval_id), actor=admin, approve=True)
    done = _post(client, gated, "execute", delete, {"input": INPUT, "approval": approval_id})
    assert done.status_code == 200, done.content
    event = AuditEvent.objects.filter(action="broker.execute").latest("id")
    assert (event.outcome, event.decision) == (Outcome.SUCCESS, Decision.APPROVED)

    # The same approval sent again: refused (409), not a denial by the role.
    again = _post(client, gated, "execute", delete, {"input": INPUT, "approval": approval_id})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "approval_used"
    event = AuditEvent.objects.filter(action="broker.execute").latest("id")
    assert (event.outcome, event.decision) == (Outcome.REFUSED, Decision.APPROVAL)

    # A call the role does not allow is a denial; a dry run is not a call.
    denied = _post(client, gated, "execute", "sandbox.update_task", {"input": {"task_id": 1}})
    assert denied.status_code == 403
    event = AuditEvent.objects.filter(action="broker.execute").latest("id")
    assert (event.outcome, event.decision) == (Outcome.DENIED, Decision.DENIED)
    checked = _post(client, gated, "check", delete, {"input": INPUT})
    assert checked.json()["decision"] == "approval_required"
    allowed = _post(client, gated, "execute", "sandbox.list_projects", {"input": {}})
    assert allowed.status_code == 200, allowed.content
    assert len(upstream.requests) == 2  # the approved delete and the list

    # One definition: 5 calls (pending, approved, refused, denied, allowed), 1 denied.
    events = AuditEvent.objects.for_organization(org)
    counts = call_counts(events)
    assert counts == {"calls": 5, "denied": 1, "pending": 1, "refused": 1}

    now = timezone.now()
    charts = chart_data(events, now - timedelta(hours=1), now, organization_id=org.pk)
    assert (charts["total_calls"], charts["total_denied"], charts["total_dry_runs"]) == (5, 1, 1)

    client.force_login(owner)
    overview = client.get(f"/o/{org.slug}/").content.decode()
    assert "<strong>5</strong> brokered calls, <strong>1</strong> denied" in overview
    assert "<strong>1</strong> waiting for approval" in overview

    report = least_privilege_report(role=gated.role, days=1)
    assert report.recorded == counts
    assert report.calls == 5  # replayed: the same calls, without the dry run
