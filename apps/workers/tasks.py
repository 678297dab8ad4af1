"""Thin Celery tasks: load, call one service, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from apps.accounts.auth_failures import auth_failures_flush
from apps.workers.services import token_expiry_warnings_send


@shared_task(
    name="workers.warn_expiring_tokens", time_limit=120, soft_time_limit=100, acks_late=True
)
def warn_expiring_tokens() -> int:
    """Daily: email org admins once per worker token expiring within 7 days."""
    return token_expiry_warnings_send()


@shared_task(name="workers.flush_auth_failures", time_limit=60, soft_time_limit=50)
def flush_auth_failures() -> int:
    """Every minute: one audit event per closed window of failed authentications."""
    return auth_failures_flush()
