from __future__ import annotations

from typing import Any

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.organizations.models import Organization


def broker_event(org: Organization, **overrides: Any) -> AuditEvent | None:
    """A broker call event as apps.broker writes it."""
    values: dict[str, Any] = {
        "action": "broker.execute",
        "organization_id": org.pk,
        "actor_type": "worker",
        "actor_id": 7,
        "actor_label": "triage-bot",
        "outcome": "success",
        "decision": "allowed",
        "worker_id": 7,
        "token_id": "tok_demo",
        "connection_id": 3,
        "provider": "github",
        "upstream_status": 200,
        "target_type": "connection",
        "target_id": 3,
        "target_label": "github-main",
        "metadata": {"action": "issues.list"},
    }
    values.update(overrides)
    return audit_record(**values)
