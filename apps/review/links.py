"""An audit event's links to the worker, token, role and connection it names, for the
reviewer's event page: the reviewer's side sits above those apps (apps/review, the top
layer), so it reads their models and names their pages directly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db.models import Model
from django.urls import NoReverseMatch, reverse

from apps.audit.models import AuditEvent
from apps.connections.models import Connection
from apps.core.models import tenant_rows
from apps.policies.models import Role
from apps.workers.models import Worker, WorkerToken


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


def event_links(event: AuditEvent, organization: Any) -> list[Link]:
    """Links to the worker, token, role and connection an event names, even when
    they are gone (shown as deleted) or revoked. Always scoped to the organization."""
    links: list[Link] = []
    if event.worker_id:
        links.append(
            _lookup(
                "Worker",
                Worker,
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
                Role,
                organization,
                role_id,
                lambda pk: (("policies:detail", {"role_id": pk}),),
            )
        )
    if event.connection_id:
        links.append(
            _lookup(
                "Connection",
                Connection,
                organization,
                event.connection_id,
                lambda pk: (("connections:detail", {"pk": pk}), ("connections:list", {})),
            )
        )
    return links


def _token_link(public_id: str, organization: Any) -> Link:
    link = Link("Token", public_id)
    token = tenant_rows(WorkerToken, organization).filter(public_id=public_id).first()
    if token is None:
        link.state = "deleted"
        return link
    link.label = str(token)
    # Tokens are listed on their worker's page.
    link.url = _url((("workers:detail", {"worker_id": token.worker_id}),), organization)
    if token.revoked_at is not None:
        link.state = "revoked"
    elif token.is_expired():
        link.state = "expired"
    return link


def _lookup(
    kind: str,
    model: type[Model],
    organization: Any,
    pk: Any,
    urls: Callable[[Any], tuple[tuple[str, dict[str, Any]], ...]],
) -> Link:
    link = Link(kind, str(pk))
    obj = tenant_rows(model, organization).filter(pk=pk).first()
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
