"""Reads of the trail: keyset pages, the chain head, call counts and actor names. (An
event's links to its worker, token, role and connection are the reviewer's:
apps/review/links.py.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet

from apps.audit.actions import CALL_ACTIONS
from apps.audit.chain import GENESIS_HASH, chain_key_for
from apps.audit.models import (
    AuditArchive,
    AuditChainHead,
    AuditEvent,
    AuditRetention,
    Decision,
    Outcome,
)

PAGE_SIZE = 50


@dataclass
class Page:
    events: list[AuditEvent]
    newer_than: int | None  # ?after=<id> for the newer page, if there is one
    older_than: int | None  # ?before=<id> for the older page, if there is one


def keyset_page(
    events: QuerySet[AuditEvent],
    *,
    before: int | None = None,
    after: int | None = None,
    size: int = PAGE_SIZE,
) -> Page:
    """Newest first, by id; `before`/`after` are ids from the previous page (never OFFSET)."""
    if after is not None:
        chunk = list(events.filter(id__gt=after).order_by("id")[: size + 1])
        has_newer = len(chunk) > size
        rows = list(reversed(chunk[:size]))
        has_older = True
    else:
        if before is not None:
            events = events.filter(id__lt=before)
        chunk = list(events.order_by("-id")[: size + 1])
        has_older = len(chunk) > size
        rows = chunk[:size]
        has_newer = before is not None
    if not rows:
        return Page(
            [],
            newer_than=None if after is None else after,
            older_than=before if after is not None else None,
        )
    return Page(
        rows,
        newer_than=rows[0].pk if has_newer else None,
        older_than=rows[-1].pk if has_older else None,
    )


def chain_head(organization: Any) -> AuditChainHead:
    key = chain_key_for(organization.pk)
    head = AuditChainHead.objects.filter(pk=key).first()
    return head or AuditChainHead(chain_key=key, seq=0, hash=GENESIS_HASH)


def recent_calls(organization: Any, *, hours: int = 1, **filters: Any) -> int:
    """Agent calls (not dry runs) in the last `hours`, e.g. by `worker_id=` or
    `token_id=`: what a confirmation says will stop. Served by audit_org_created."""
    from datetime import timedelta

    from django.utils import timezone

    since = timezone.now() - timedelta(hours=hours)
    return AuditEvent.objects.filter(
        organization=organization, created_at__gte=since, action__in=CALL_ACTIONS, **filters
    ).count()


def with_actor_names(events: list[AuditEvent]) -> list[AuditEvent]:
    """Give each event `actor_shown`, one format everywhere: a person by their current
    email (their events may carry a username), a worker by name, else the label or id.
    One query for the whole page."""
    from django.contrib.auth import get_user_model

    ids = {e.actor_id for e in events if e.actor_type == "user" and str(e.actor_id).isdigit()}
    emails = (
        {
            str(pk): email
            for pk, email in get_user_model()
            .objects.filter(pk__in=[int(i) for i in ids])
            .values_list("pk", "email")
        }
        if ids
        else {}
    )
    for e in events:
        shown = emails.get(str(e.actor_id)) if e.actor_type == "user" else None
        e.actor_shown = shown or e.actor_label or (f"#{e.actor_id}" if e.actor_id else "")  # type: ignore[attr-defined]
    return events


def calls_per_tool(organization: Any, *, connection_id: int, days: int = 7) -> dict[str, int]:
    """Agent calls of an MCP connection's tools in the last `days`, by tool name (the
    broker records the tool as `metadata.mcp_tool`). One grouped query."""
    from datetime import timedelta

    from django.db.models import Count
    from django.utils import timezone

    since = timezone.now() - timedelta(days=days)
    rows = (
        AuditEvent.objects.filter(
            organization=organization,
            created_at__gte=since,
            action__in=CALL_ACTIONS,
            connection_id=connection_id,
        )
        .values_list("metadata__mcp_tool")
        .annotate(calls=Count("id"))
    )
    return {str(tool): calls for tool, calls in rows if tool}


# What every page counts (the overview, the charts, a role's least-privilege report):
# an agent's call is the decided event of broker.execute or broker.proxy (MCP tool
# calls included), one per call; not the dry runs (broker.check), not the pre-call
# `.attempt` rows. Denied means the role (or a person, on an approval) said no; a call
# waiting for approval and an approval refused for a call (already used, expired …)
# are counted apart, never as denials.
CALL = Q(action__in=CALL_ACTIONS) & ~Q(decision="")
DENIED = Q(decision=Decision.DENIED)
PENDING = Q(outcome=Outcome.PENDING)
REFUSED = Q(outcome=Outcome.REFUSED)


def call_counts(events: QuerySet[AuditEvent], newest: int | None = None) -> dict[str, int]:
    """`calls`, `denied`, `pending` and `refused` of `events` (already narrowed to an
    organization and a window), in one aggregate; with `newest`, of at most the newest
    that many calls (a wide window of a busy organization holds hundreds of thousands,
    which take a second to count: `calls == newest` says the count stopped there)."""
    calls = events.filter(CALL)
    if newest is not None:
        calls = calls.order_by("-id")[:newest]
    counted = calls.aggregate(
        calls=Count("id"),
        denied=Count("id", filter=DENIED),
        pending=Count("id", filter=PENDING),
        refused=Count("id", filter=REFUSED),
    )
    return {key: int(value or 0) for key, value in counted.items()}


def organization_archives(organization: Any, limit: int = 36) -> list[AuditArchive]:
    """The organization's archived months, newest first (Settings page)."""
    return list(AuditArchive.objects.filter(organization=organization).order_by("-month")[:limit])


def retention_months(organization_id: int) -> int | None:
    """The organization's audit retention in whole months; None: kept for ever."""
    return (
        AuditRetention.objects.filter(organization_id=organization_id)
        .values_list("months", flat=True)
        .first()
    )
