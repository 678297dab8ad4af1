"""The one writer of audit events.

`audit_record()` must be called inside the transaction of the change it
describes: if the event cannot be written the exception propagates and the
change rolls back with it. It never swallows errors."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from apps.audit.chain import GENESIS_HASH, chain_key_for, event_hash
from apps.audit.models import ActorType, AuditChainHead, AuditEvent, Outcome
from apps.core.middleware import current_request_id


def client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def actor_from_request(request: HttpRequest | None) -> dict[str, str]:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return {
            "actor_type": ActorType.USER,
            "actor_id": str(user.pk),
            "actor_label": user.get_username(),
        }
    return {"actor_type": ActorType.ANONYMOUS, "actor_id": "", "actor_label": ""}


@transaction.atomic
def audit_record(
    *,
    action: str,
    organization: Any = None,
    organization_id: int | None = None,
    actor_type: str = ActorType.SYSTEM,
    actor_id: str | int = "",
    actor_label: str = "",
    target: Any = None,
    target_type: str = "",
    target_id: str | int = "",
    target_label: str = "",
    outcome: str = Outcome.SUCCESS,
    metadata: dict[str, Any] | None = None,
    request: HttpRequest | None = None,
    **fields: Any,
) -> AuditEvent:
    """Append one event to its organization's chain. Keyword-only by design.

    `target` may be a model instance; its type, pk and str() are recorded.
    Extra `fields` are the broker columns (decision, worker_id, token_id, …).
    """
    if organization is not None:
        organization_id = organization.pk
    if target is not None:
        target_type = target_type or target._meta.model_name
        target_id = target_id or target.pk
        target_label = target_label or str(target)
    if request is not None and actor_type == ActorType.SYSTEM and not actor_id:
        actor = actor_from_request(request)
        actor_type, actor_id, actor_label = (
            actor["actor_type"],
            actor["actor_id"],
            actor_label or actor["actor_label"],
        )
    values: dict[str, Any] = {
        "organization_id": organization_id,
        "actor_type": actor_type,
        "actor_id": str(actor_id),
        "actor_label": actor_label[:200],
        "action": action,
        "target_type": target_type,
        "target_id": str(target_id),
        "target_label": target_label[:300],
        "outcome": outcome,
        "metadata": metadata or {},
        "ip": fields.pop("ip", None) or client_ip(request),
        "user_agent": (
            fields.pop("user_agent", None)
            or (request.META.get("HTTP_USER_AGENT", "") if request is not None else "")
        )[:300],
        "request_id": fields.pop("request_id", None)
        or (current_request_id.get() if current_request_id.get() != "-" else ""),
        "decision": fields.pop("decision", ""),
        "worker_id": fields.pop("worker_id", None),
        "token_id": fields.pop("token_id", ""),
        "connection_id": fields.pop("connection_id", None),
        "provider": fields.pop("provider", ""),
        "upstream_status": fields.pop("upstream_status", None),
        "latency_ms": fields.pop("latency_ms", None),
        "reason": fields.pop("reason", ""),
    }
    if fields:
        raise TypeError(f"Unknown audit fields: {sorted(fields)}")

    chain_key = chain_key_for(organization_id)
    head = _lock_head(chain_key)
    values.update(
        chain_key=chain_key,
        seq=head.seq + 1,
        prev_hash=head.hash,
        created_at=timezone.now(),
    )
    values["hash"] = event_hash(values)
    event = AuditEvent(**values)
    event.save(force_insert=True)
    AuditChainHead.objects.filter(pk=chain_key).update(seq=event.seq, hash=event.hash)
    return event


def _lock_head(chain_key: str) -> AuditChainHead:
    head = AuditChainHead.objects.select_for_update().filter(pk=chain_key).first()
    if head is not None:
        return head
    AuditChainHead.objects.get_or_create(pk=chain_key, defaults={"seq": 0, "hash": GENESIS_HASH})
    return AuditChainHead.objects.select_for_update().get(pk=chain_key)
