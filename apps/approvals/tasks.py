"""Thin Celery tasks: take ids, call one service, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from apps.approvals import notify
from apps.approvals.services import approvals_expire
from apps.core.egress import EgressError


@shared_task(name="approvals.expire_due", time_limit=60, soft_time_limit=50)
def expire_due() -> int:
    """Periodic (beat): expire open approvals past their expiry, each audited."""
    return approvals_expire()


@shared_task(
    name="approvals.notify_approvers",
    time_limit=60,
    soft_time_limit=50,
    autoretry_for=(OSError,),
    retry_backoff=30,
    max_retries=5,
)
def notify_approvers(approval_id: int) -> int:
    """Email each eligible approver a personal link (skipped once decided)."""
    return notify.notify_approvers_by_email(approval_id)


@shared_task(
    name="approvals.deliver_webhook",
    time_limit=120,
    soft_time_limit=110,
    autoretry_for=(notify.WebhookFailed, EgressError),
    retry_backoff=10,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=notify.MAX_ATTEMPTS,
    acks_late=True,
)
def deliver_webhook(approval_id: int, event: str = "") -> int:  # noqa: ARG001 - `event`: messages queued before the events were kept in order
    """Deliver the approval's pending webhook events, in order (notify.deliver_webhook)."""
    return notify.deliver_webhook(approval_id)
