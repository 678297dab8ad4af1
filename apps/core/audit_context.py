"""Who acts, from where, under which request id: the audit context.

Set once per unit of work and read by the audit writer
(`apps.audit.services.audit_record`); services take the domain arguments they
need, never the request (docs/architecture.md, "Audit context").

- `RequestIdMiddleware` opens a request's context: its server-generated request
  id, the client's address and user agent, and an anonymous actor. It resets the
  context when the request ends, so a server thread never carries one request's
  context into the next.
- `AuditActorMiddleware` (after Django's authentication) names the session's user.
- The personal-API-token authenticator names the token's user and token; the
  agent authenticator names the worker and its token. They `bind_actor()` inside
  the request's context, which the middleware's reset undoes.
- Celery tasks, management commands and tests use `audit_context(...)` for a
  block; without one the actor is the system.

Core imports no other app: actor types are the plain values of
`apps.audit.models.ActorType`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, replace
from typing import Any

SYSTEM = "system"
ANONYMOUS = "anonymous"
USER = "user"
WORKER = "worker"

CLIENT_REQUEST_ID_MAX = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._:/+=@-]")


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Everything an audit event repeats about the caller (never a secret)."""

    actor_type: str = SYSTEM
    actor_id: str = ""
    actor_label: str = ""
    ip: str | None = None
    user_agent: str = ""
    # Server-generated; echoed as X-Request-Id and on every log line.
    request_id: str = ""
    # What the client sent as X-Request-Id (sanitised): audit metadata only, never
    # the request id (an agent could collide with others').
    client_request_id: str = ""
    # The public id of the token that authenticated the call (worker or personal).
    token_id: str = ""
    worker_id: int | None = None
    # The member the worker acts for (apps.workers.models.Worker.acts_for): the second
    # principal of a worker's events, by user id and email.
    on_behalf_of_id: int | None = None
    on_behalf_of_label: str = ""

    def actor_fields(self) -> dict[str, Any]:
        """The actor columns of an audit event, plus the token and worker behind it."""
        fields: dict[str, Any] = {
            "actor_type": self.actor_type,
            "actor_id": self.actor_id,
            "actor_label": self.actor_label,
        }
        if self.token_id:
            fields["token_id"] = self.token_id
        if self.worker_id is not None:
            fields["worker_id"] = self.worker_id
        if self.on_behalf_of_id is not None:
            fields["on_behalf_of_id"] = self.on_behalf_of_id
            fields["on_behalf_of_label"] = self.on_behalf_of_label
        return fields


SYSTEM_CONTEXT = AuditContext()
_current: ContextVar[AuditContext] = ContextVar("grantry_audit_context", default=SYSTEM_CONTEXT)


def current() -> AuditContext:
    """The context of the running request, task or block; the system's outside any."""
    return _current.get()


def bind(context: AuditContext) -> Token[AuditContext]:
    """Make `context` current; give the token back to `unbind` in a `finally`."""
    return _current.set(context)


def unbind(token: Token[AuditContext]) -> None:
    _current.reset(token)


@contextmanager
def audit_context(context: AuditContext | None = None, **changes: Any) -> Iterator[AuditContext]:
    """For a block (a Celery task, a management command, a test): `context`, or the
    current one with `changes`, then back to what was there before."""
    bound = replace(context if context is not None else current(), **changes)
    token = _current.set(bound)
    try:
        yield bound
    finally:
        _current.reset(token)


def user_actor(user: Any) -> dict[str, str]:
    """The actor fields of a person (or {} for no one / an anonymous user)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return {}
    return {"actor_type": USER, "actor_id": str(user.pk), "actor_label": user.get_username()}


def bind_actor(
    *,
    actor_type: str,
    actor_id: str | int,
    actor_label: str,
    token_id: str = "",
    worker_id: int | None = None,
    on_behalf_of_id: int | None = None,
    on_behalf_of_label: str = "",
) -> None:
    """Name who acts in the current request (an authenticator, once it knows). No
    token: the request's `bind`/`unbind` around it restores what was there before."""
    _current.set(
        replace(
            _current.get(),
            actor_type=actor_type,
            actor_id=str(actor_id),
            actor_label=actor_label,
            token_id=token_id,
            worker_id=worker_id,
            on_behalf_of_id=on_behalf_of_id,
            on_behalf_of_label=on_behalf_of_label,
        )
    )


def bind_user(user: Any, *, token_id: str = "") -> None:
    """A signed-in person acts in the current request (nothing for an anonymous user)."""
    if user is not None and getattr(user, "is_authenticated", False):
        bind_actor(
            actor_type=USER,
            actor_id=user.pk,
            actor_label=user.get_username(),
            token_id=token_id,
        )


def sanitize_client_request_id(value: str) -> str:
    """Printable, harmless characters only (others dropped), at most 64 of them."""
    return _UNSAFE.sub("", value[: CLIENT_REQUEST_ID_MAX * 4])[:CLIENT_REQUEST_ID_MAX]


def client_ip(request: Any) -> str | None:
    """The peer's address (REMOTE_ADDR; the proxy in front sets it from X-Forwarded-For)."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def for_request(request: Any, request_id: str) -> AuditContext:
    """A request's context before anyone is authenticated: an anonymous actor."""
    meta = request.META
    return AuditContext(
        actor_type=ANONYMOUS,
        ip=client_ip(request),
        user_agent=meta.get("HTTP_USER_AGENT", "")[:300],
        request_id=request_id,
        client_request_id=sanitize_client_request_id(meta.get("HTTP_X_REQUEST_ID", "")),
    )


def request_id_for_logs() -> str:
    """The current request id, or "-" outside a request (log lines, error bodies)."""
    return _current.get().request_id or "-"


def client_request_metadata() -> dict[str, str]:
    """`{"client_request_id": …}` when the client sent one: for audit event metadata."""
    client_id = _current.get().client_request_id
    return {"client_request_id": client_id} if client_id else {}
