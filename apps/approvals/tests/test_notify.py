"""The outbound webhook: a real Celery worker delivers to a local HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.approvals.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookFailed, deliver_webhook
from apps.approvals.services import approval_settings_update
from apps.approvals.tests.conftest import make_gated_agent
from apps.broker.tests.upstream import RecordingUpstream, Reply
from apps.organizations.models import Organization

SECRET = "whsec-0123456789abcdef"


@pytest.fixture
def receiver() -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as server:
        server.reply = Reply(status=200, body={"ok": True})
        yield server


def _wait_for(predicate: Any, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("admin", "celery_worker")
def test_a_request_is_posted_with_a_valid_hmac(
    org: Organization, owner: User, receiver: RecordingUpstream
) -> None:
    approval_settings_update(
        organization=org,
        require_two_approvers=False,
        webhook_url=f"{receiver.url}/slack/hook",
        webhook_secret=SECRET,
    )
    agent = make_gated_agent(org, creator=owner)
    approval = agent.request()  # commits; on_commit enqueues the delivery

    assert _wait_for(lambda: len(receiver.requests) >= 1), "no webhook delivery"
    hit = receiver.requests[0]
    assert hit.method == "POST"
    assert hit.path == "/slack/hook"
    headers = {k.lower(): v for k, v in hit.headers.items()}
    timestamp = headers[TIMESTAMP_HEADER.lower()]
    expected = hmac.new(
        SECRET.encode(), timestamp.encode() + b"." + hit.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER.lower()], f"sha256={expected}")
    payload = json.loads(hit.body)
    assert payload["event"] == "approval.requested"
    assert payload["approval"]["id"] == approval.public_id
    dashboard = f"/o/{org.slug}/approvals/{approval.public_id}/"
    assert payload["approval"]["dashboard_url"].endswith(dashboard)
    assert dashboard in payload["text"]  # what Slack shows links back to the dashboard
    assert "input" not in payload["approval"]  # never the input itself


@pytest.mark.django_db
@pytest.mark.usefixtures("admin")  # someone who may approve the owner's worker
def test_a_refused_delivery_raises_for_a_retry(
    org: Organization, owner: User, receiver: RecordingUpstream
) -> None:
    receiver.reply = Reply(status=500, body={"no": True})
    approval_settings_update(
        organization=org, require_two_approvers=False, webhook_url=f"{receiver.url}/x"
    )
    approval = make_gated_agent(org, creator=owner).request()
    with pytest.raises(WebhookFailed) as info:
        deliver_webhook(approval.pk)
    assert "127.0.0.1" not in str(info.value)  # the URL (a credential for Slack) stays out
    assert len(receiver.requests) == 1
    assert SIGNATURE_HEADER not in receiver.requests[0].headers  # no secret, no signature


@pytest.mark.django_db
@pytest.mark.usefixtures("admin")
def test_no_webhook_configured_sends_nothing(
    org: Organization, owner: User, receiver: RecordingUpstream
) -> None:
    approval = make_gated_agent(org, creator=owner).request()
    assert deliver_webhook(approval.pk) == 0
    assert receiver.requests == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_one_approvals_events_arrive_in_order_saying_what_was_true_then(
    org: Organization, owner: User, admin: User, receiver: RecordingUpstream
) -> None:
    """Issue 22 item 5: the receiver refuses `approval.requested` once; the approval is
    decided meanwhile. `requested` must still arrive first, saying "pending"."""
    from apps.approvals.services import approval_decide

    receiver.reply = Reply(status=503, body={"busy": True})
    approval_settings_update(
        organization=org, require_two_approvers=False, webhook_url=f"{receiver.url}/hook"
    )
    approval = make_gated_agent(org, creator=owner).request()
    assert _wait_for(lambda: len(receiver.requests) >= 1), "no first delivery"
    receiver.reply = Reply(status=200, body={"ok": True})  # busy while it was pending
    approval_decide(approval=approval, actor=admin, approve=True)

    def accepted() -> list[dict[str, Any]]:
        return [json.loads(hit.body) for hit in receiver.requests if hit.status == 200]

    assert _wait_for(lambda: len(accepted()) >= 2, 60), receiver.requests
    delivered = accepted()
    assert [p["event"] for p in delivered] == ["approval.requested", "approval.approved"]
    assert delivered[0]["approval"]["status"] == "pending"
    assert delivered[0]["approval"]["approvals_received"] == 0
    assert delivered[1]["approval"]["status"] == "approved"
    assert delivered[0]["event_id"] < delivered[1]["event_id"]
    time.sleep(1)
    assert len(accepted()) == 2  # each accepted once
