"""A little agent traffic for the `make run` demo, so a reviewer finds real
denied and checked calls in the audit trail on first visit.

It goes through the real agent API in-process (authentication, policy, audit)
with a token minted for the purpose and revoked right after. Only calls that
need no upstream are made: the Sandbox is not serving yet while we seed."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.test import Client

from apps.audit.models import AuditEvent
from apps.dashboard.demo_worker import DEMO_WORKER
from apps.workers.models import Worker
from apps.workers.services import token_mint, token_revoke

CALLS = [
    ("execute", "sandbox.delete_task", {"task_id": 1}),
    ("execute", "sandbox.update_task", {"task_id": 2, "done": True}),
    ("check", "sandbox.list_projects", {}),
    ("check", "sandbox.delete_task", {"task_id": 3}),
]


def seed_demo_traffic(*, organization: Any, user: Any) -> str:
    """Idempotent: does nothing once the org has broker events."""
    if (
        AuditEvent.objects.for_organization(organization)
        .filter(action__startswith="broker.")
        .exists()
    ):
        return "Demo agent traffic is already in the audit trail."
    worker = Worker.objects.get(organization=organization, name=DEMO_WORKER)
    token, raw = token_mint(worker=worker, expires_in_days=1, actor=user)
    host = urlsplit(settings.GRANTRY_BASE_URL).hostname or "127.0.0.1"
    client = Client(HTTP_HOST=host, HTTP_USER_AGENT="grantry-demo-seed")
    statuses = []
    try:
        for verb, action, payload in CALLS:
            response = client.post(
                f"/api/v1/actions/{action}/{verb}",
                data=json.dumps({"input": payload}),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {raw}",
            )
            statuses.append(f"{verb} {action} → {response.status_code}")
    finally:
        token_revoke(token=token, actor=user, reason="Demo traffic seeded; token retired.")
    return "Demo agent traffic (denied and checked calls) recorded: " + "; ".join(statuses)
