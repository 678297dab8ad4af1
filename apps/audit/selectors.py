"""Reads for the reviewer pages: keyset pages, the chain head and an event's links."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.apps import apps as django_apps
from django.db.models import QuerySet
from django.urls import NoReverseMatch, reverse

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


def _url(names: tuple[str, ...], organization: Any, pk: Any) -> str:
    for name in names:
        for key in ("pk", "id"):
            try:
                return reverse(name, kwargs={"org_slug": organization.slug, key: pk})
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
            _lookup("Worker", "workers.Worker", organization, event.worker_id, ("workers:detail",))
        )
    if event.token_id:
        link = Link("Token", event.token_id)
        model = _model("workers.WorkerToken")
        token = (
            model.objects.filter(organization=organization, public_id=event.token_id).first()
            if model
            else None
        )
        if token is None:
            link.state = "deleted" if model else ""
        else:
            link.label = str(token)
            link.url = _url(("workers:token_detail", "workers:token"), organization, token.pk)
            if token.revoked_at is not None:
                link.state = "revoked"
            elif hasattr(token, "is_expired") and token.is_expired():
                link.state = "expired"
        links.append(link)
    role_id = (event.metadata or {}).get("role_id")
    if role_id:
        links.append(
            _lookup(
                "Role", "policies.Role", organization, role_id, ("policies:detail", "policies:role")
            )
        )
    if event.connection_id:
        link = _lookup(
            "Connection",
            "connections.Connection",
            organization,
            event.connection_id,
            ("connections:detail",),
        )
        links.append(link)
    return links


def _lookup(kind: str, label: str, organization: Any, pk: Any, url_names: tuple[str, ...]) -> Link:
    link = Link(kind, str(pk))
    model = _model(label)
    if model is None:
        return link
    obj = model.objects.filter(organization=organization, pk=pk).first()
    if obj is None:
        link.state = "deleted"
        return link
    link.label = str(obj)
    link.url = _url(url_names, organization, obj.pk)
    status = getattr(obj, "status", "")
    if getattr(obj, "revoked_at", None) is not None or status == "revoked":
        link.state = "revoked"
    elif status == "disabled":
        link.state = "disabled"
    return link
