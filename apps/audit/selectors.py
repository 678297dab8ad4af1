"""Reads for the reviewer pages: keyset pages, the chain head and an event's links."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.apps import apps as django_apps
from django.db.models import QuerySet
from django.urls import NoReverseMatch, reverse

from apps.audit.actions import CALL_ACTIONS
from apps.audit.chain import GENESIS_HASH, chain_key_for
from apps.audit.models import AuditChainHead, AuditEvent

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


@dataclass
class Link:
    kind: str
    ref: str
    label: str = ""
    url: str = ""
    state: str = ""  # "", "deleted", "revoked", "disabled", "expired"


def _url(candidates: tuple[tuple[str, dict[str, Any]], ...], organization: Any) -> str:
    """The first of (url name, kwargs) that the owning app serves; "" if none yet."""
    for name, kwargs in candidates:
        try:
            return reverse(name, kwargs={"org_slug": organization.slug, **kwargs})
        except NoReverseMatch:
            continue
    return ""


def _model(label: str) -> Any:
    try:
        return django_apps.get_model(label)
    except LookupError:  # the app has not shipped this model yet
        return None


def event_links(event: AuditEvent, organization: Any) -> list[Link]:
    """Links to the worker, token, role and connection an event names, even when
    they are gone (shown as deleted) or revoked. Always scoped to the organization."""
    links: list[Link] = []
    if event.worker_id:
        links.append(
            _lookup(
                "Worker",
                "workers.Worker",
                organization,
                event.worker_id,
                lambda pk: (("workers:detail", {"worker_id": pk}),),
            )
        )
    if event.token_id:
        links.append(_token_link(event.token_id, organization))
    role_id = (event.metadata or {}).get("role_id")
    if role_id:
        links.append(
            _lookup(
                "Role",
                "policies.Role",
                organization,
                role_id,
                lambda pk: (("policies:detail", {"role_id": pk}),),
            )
        )
    if event.connection_id:
        links.append(
            _lookup(
                "Connection",
                "connections.Connection",
                organization,
                event.connection_id,
                lambda pk: (("connections:detail", {"pk": pk}), ("connections:list", {})),
            )
        )
    return links


def _token_link(public_id: str, organization: Any) -> Link:
    link = Link("Token", public_id)
    model = _model("workers.WorkerToken")
    if model is None:
        return link
    token = model.objects.filter(organization=organization, public_id=public_id).first()
    if token is None:
        link.state = "deleted"
        return link
    link.label = str(token)
    # Tokens are listed on their worker's page.
    link.url = _url((("workers:detail", {"worker_id": token.worker_id}),), organization)
    if token.revoked_at is not None:
        link.state = "revoked"
    elif hasattr(token, "is_expired") and token.is_expired():
        link.state = "expired"
    return link


def _lookup(
    kind: str,
    label: str,
    organization: Any,
    pk: Any,
    urls: Callable[[Any], tuple[tuple[str, dict[str, Any]], ...]],
) -> Link:
    link = Link(kind, str(pk))
    model = _model(label)
    if model is None:
        return link
    obj = model.objects.filter(organization=organization, pk=pk).first()
    if obj is None:
        link.state = "deleted"
        return link
    link.label = str(obj)
    link.url = _url(urls(obj.pk), organization)
    status = getattr(obj, "status", "")
    if getattr(obj, "revoked_at", None) is not None or status == "revoked":
        link.state = "revoked"
    elif status == "disabled":
        link.state = "disabled"
    return link


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
