"""What an approval's events set off, in the event's transaction: the organization's
webhook event kept with its body as things are now, and after commit the approvers'
emails and the webhook's delivery (apps.approvals.notify, queued by their tasks'
names, so no service imports apps.approvals.tasks)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.approvals.models import Approval, ApprovalSettings, ApprovalWebhookEvent
from apps.approvals.services.base import approvals_received, dashboard_url
from apps.core.tasks import enqueue


def notify_event(approval: Approval, event: str) -> None:
    """Call in the event's transaction: the webhook's body is kept now, as things
    are, and the email and the delivery are enqueued after commit (`robust`: a
    broken queue is logged and never turns the agent's 202 or an approver's decision
    into an error)."""
    queued = webhook_event_record(approval, event) is not None
    approval_id = approval.pk

    def send() -> None:
        if event == "approval.requested":
            enqueue("approvals.notify_approvers", approval_id)
        if queued:
            enqueue("approvals.deliver_webhook", approval_id)

    transaction.on_commit(send, robust=True)


def webhook_payload(approval: Approval, event: str) -> dict[str, Any]:
    """The event's body as of now (called in the event's transaction)."""
    url = dashboard_url(approval)
    status = approval.effective_status()
    words = {
        "approval.requested": "Approval needed",
        "approval.approved": "Approved",
        "approval.denied": "Denied",
    }.get(event, event)
    return {
        "event": event,
        "occurred_at": timezone.now().isoformat(),
        "text": f"{words}: {approval.summary} Review: {url}",
        "approval": {
            "id": approval.public_id,
            "status": status,
            "organization": approval.organization.slug,
            "worker": approval.worker.name,
            "what": approval.what(),
            "connection": approval.connection_name,
            "input_sha256": approval.input_digest,
            "reason": approval.reason,
            "expires_at": approval.expires_at.isoformat(),
            "approvals_needed": approval.approvals_needed,
            "approvals_received": approvals_received(approval),
            "dashboard_url": url,
        },
    }


def webhook_event_record(approval: Approval, event: str) -> ApprovalWebhookEvent | None:
    """In the event's transaction: keep the event's body as it is now, for delivery
    after commit. None when the organization has no approval settings (no webhook)."""
    if not ApprovalSettings.objects.filter(organization_id=approval.organization_id).exists():
        return None
    return ApprovalWebhookEvent.objects.create(
        approval=approval, event=event, payload=webhook_payload(approval, event)
    )
