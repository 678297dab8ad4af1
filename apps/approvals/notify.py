"""Telling people that an agent waits: email to approvers and the organization's
outbound webhook. The only module that reads the webhook URL and secret.

Email: each eligible approver (separation of duties applied) gets a personal,
signed, single-use link that expires with the request. The link needs a login
(and MFA when enrolled) and only opens the approval's page: a link alone never
approves.

Webhook: a JSON POST through apps.core.egress (SSRF guard, timeouts), with

    X-Grantry-Timestamp: <unix seconds>
    X-Grantry-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

The body carries a plain-words `text` (what a Slack incoming webhook shows) and
a link back to the dashboard; never the input and never a way to decide.

Each event's body is built when the event happens, in its transaction
(`services.events.webhook_event_record`: an `ApprovalWebhookEvent` row), so it says
what was true then; `deliver_webhook` sends one approval's events oldest first and stops at the
first failure, so a receiver sees them in the order they happened; `event_id`
(the row's id) lets it drop a repeat after an answer that was lost.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from apps.approvals.models import (
    Approval,
    ApprovalSettings,
    ApprovalWebhookEvent,
    WebhookEventStatus,
)
from apps.approvals.services import approval_links_create, eligible_approvers

SIGNATURE_HEADER = "X-Grantry-Signature"
TIMESTAMP_HEADER = "X-Grantry-Timestamp"
WEBHOOK_TIMEOUT_SECONDS = 10.0


class WebhookFailed(Exception):
    """The receiver did not accept the delivery (retried by the task)."""


def notify_approvers_by_email(approval_id: int) -> int:
    approval = (
        Approval.objects.select_related("organization", "worker").filter(pk=approval_id).first()
    )
    if approval is None or approval.effective_status() != "pending":
        return 0
    users = [u for u in eligible_approvers(approval) if u.email]
    links = approval_links_create(approval=approval, users=users)
    org = approval.organization
    for user, url in links:
        body = (
            f"{approval.summary}\n\n"
            f"Why, in the agent's words: {approval.reason or '(no reason given)'}\n\n"
            f"Review it (you will be asked to log in; the link works once and expires "
            f"{approval.expires_at:%Y-%m-%d %H:%M} UTC):\n{url}\n\n"
            f"Nothing is approved by opening this link.\n"
        )
        send_mail(
            f"[Grantry] {org.name}: approval needed for {approval.what()}", body, None, [user.email]
        )
    return len(links)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


MAX_ATTEMPTS = 8


def deliver_webhook(approval_id: int) -> int:
    """POST this approval's pending webhook events, oldest first; how many were
    delivered. Holding their rows locked, so two deliveries of one approval take
    turns and never overtake each other. Stops at the first failure, records the
    attempt (an event that failed MAX_ATTEMPTS times is given up, so it cannot hold
    back later ones for ever) and raises WebhookFailed or an EgressError for a retry."""
    from apps.core.egress import EgressError, egress_request

    failure: Exception | None = None
    delivered = 0
    with transaction.atomic():
        pending = list(
            ApprovalWebhookEvent.objects.select_for_update()
            .filter(approval_id=approval_id, status=WebhookEventStatus.PENDING)
            .select_related("approval")
            .order_by("id")
        )
        if not pending:
            return 0
        row = ApprovalSettings.objects.filter(
            organization_id=pending[0].approval.organization_id
        ).first()
        if row is None or not row.webhook_url:
            for item in pending:
                _mark(item, WebhookEventStatus.SKIPPED)
            return 0
        for item in pending:
            body = json.dumps({**item.payload, "event_id": item.pk}, sort_keys=True).encode()
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp}
            if row.webhook_secret:
                headers[SIGNATURE_HEADER] = signature(row.webhook_secret, timestamp, body)
            try:
                response = egress_request(
                    "POST",
                    row.webhook_url,
                    headers=headers,
                    content=body,
                    timeout=WEBHOOK_TIMEOUT_SECONDS,
                )
                if not 200 <= response.status_code < 300:
                    # The URL may hold a credential (Slack's does): name only the status.
                    raise WebhookFailed(f"webhook answered {response.status_code}")
            except (WebhookFailed, EgressError) as exc:
                item.attempts += 1
                if item.attempts >= MAX_ATTEMPTS:
                    _mark(item, WebhookEventStatus.FAILED)
                    continue  # given up: the later events go on, still in order
                item.save(update_fields=["attempts"])
                failure = exc
                break
            item.attempts += 1
            _mark(item, WebhookEventStatus.DELIVERED)
            delivered += 1
    if failure is not None:
        raise failure
    return delivered


def _mark(item: ApprovalWebhookEvent, status: str) -> None:
    item.status = status
    item.delivered_at = timezone.now() if status == WebhookEventStatus.DELIVERED else None
    item.save(update_fields=["status", "delivered_at", "attempts"])
