from __future__ import annotations

from celery import shared_task

from apps.mcpauth.services import expire_unused_clients


@shared_task(name="mcpauth.expire_unused_clients", time_limit=300, soft_time_limit=240)
def expire_unused_clients_task() -> int:
    """Delete registered OAuth clients that never got a grant (safe to run twice)."""
    return expire_unused_clients()
