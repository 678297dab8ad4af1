"""Agent authentication: `Authorization: Bearer gry_…`, or for a token bound to a key
`Authorization: DPoP gry_…` with its proof (RFC 9449, apps.workers.dpop), and nothing else.

On success `request.user` is a `WorkerPrincipal` and `request.auth` an
`AgentContext`: plain values read in ONE statement (token + worker + role +
organization by digest), no model instances. Every failure answers 401 with
`WWW-Authenticate: Bearer` and the standard error body, and is audited with
the token's public id when it is known — never with the raw token.

A token bound to a key (`dpop_jkt`) works only with a valid DPoP proof of that key; a
worker that requires DPoP has every unbound token of it refused. Both facts come with the
one statement, and an unbound token of a worker that does not require DPoP (every token
before DPoP existed) skips the proof check on one falsy test: no query, no cache read.
Proof refusals answer 401 `invalid_dpop_proof` with `WWW-Authenticate: DPoP
error="invalid_dpop_proof"` and are counted, throttled and audited like the rest
(`token.dpop_refused` when the token was found).

The organization comes from the token row (`t.organization_id`), never from the
request: this is the agent side of the tenant boundary (apps/core/models.py), and
everything the call reads next is scoped by `AgentContext.organization_id`.

There is no cache, so a revocation is seen by every process on the next
request; a call already past this check is stopped by the fence in its attempt
statement (apps/workers/fence.py). The lookup takes no lock and leaves nothing held.
The worker becomes the actor of the request's audit context
(apps.core.audit_context; the request middleware resets it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, NoReturn

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request
from typing_extensions import override

from apps.accounts.auth_failures import auth_refuse
from apps.audit.models import ActorType
from apps.core import audit_context
from apps.core.audit_context import client_ip
from apps.core.tokens import digests_match, looks_like_token, parse_token
from apps.organizations.models import Membership, Organization
from apps.policies.models import Role
from apps.workers import dpop
from apps.workers.models import Worker, WorkerStatus, WorkerToken
from apps.workers.services import token_touch

REALM = "grantry"

FAILURES = {
    "token_missing": "Send the worker token as 'Authorization: Bearer gry_…'.",
    "token_malformed": "The token is not a well-formed Grantry worker token.",
    "token_invalid": "The token is unknown or has been revoked.",
    "token_expired": "The token has expired. Mint or roll a new one.",
    "worker_disabled": "The worker of this token is disabled.",
    "token_audience": "This token was issued for another resource (RFC 8707).",
    "member_inactive": "The member this worker acts for is no longer an active member of "
    "the organization.",
    "invalid_dpop_proof": "This token is bound to a key (DPoP): send it as "
    "'Authorization: DPoP <token>' with a fresh proof in the 'DPoP' header.",
    "dpop_required": "This worker requires DPoP, and this token is not bound to a key. "
    "Mint or obtain a token bound to your public key.",
    "dpop_unbound": "This token is not bound to a key: send it as 'Authorization: Bearer'.",
}
DPOP_CODES = frozenset({"invalid_dpop_proof", "dpop_required", "dpop_unbound"})


@dataclass
class AgentContext:
    """Who is calling: the worker token's identity, as plain values.

    Model instances (`organization`, `worker`, `token`) load on first access, for
    the few agent views that show them (whoami); the broker never asks."""

    token_pk: int
    token_public_id: str
    token_last4: str
    token_expires_at: datetime
    token_last_used_at: datetime | None
    worker_id: int
    worker_name: str
    role_id: int
    role_name: str
    # The role's rules version as of this lookup (policies.selectors.role_rules).
    rules_version: int
    organization_id: int
    organization_slug: str
    store_broker_input: bool
    # The resource an OAuth-issued token is bound to and its client ("" for static tokens).
    audience: str = ""
    oauth_client: str = ""
    # The member the worker acts for (Worker.acts_for) and their email: the second
    # principal of every audit event of the call; None for a worker that acts for no one.
    acting_for_id: int | None = None
    acting_for_label: str = ""
    # The thumbprint of the key the token is bound to (DPoP), "" for a bearer token.
    dpop_jkt: str = ""

    @classmethod
    def for_token(cls, token: WorkerToken) -> AgentContext:
        """The context of a token loaded through the ORM (tests, background work)."""
        return cls(
            token_pk=token.pk,
            token_public_id=token.public_id,
            token_last4=token.last4,
            token_expires_at=token.expires_at,
            token_last_used_at=token.last_used_at,
            worker_id=token.worker_id,
            worker_name=token.worker.name,
            role_id=token.role_id,
            role_name=token.role.name,
            rules_version=token.role.rules_version,
            organization_id=token.organization_id,
            organization_slug=token.organization.slug,
            store_broker_input=token.organization.store_broker_input,
            audience=token.audience,
            oauth_client=token.oauth_client,
            acting_for_id=token.worker.acts_for_id,
            acting_for_label=token.worker.acts_for.email if token.worker.acts_for else "",
            dpop_jkt=token.dpop_jkt,
        )

    @cached_property
    def organization(self) -> Organization:
        return Organization.objects.get(pk=self.organization_id)

    @cached_property
    def worker(self) -> Worker:
        return Worker.objects.get(pk=self.worker_id)

    @cached_property
    def token(self) -> WorkerToken:
        return WorkerToken.objects.select_related("role").get(pk=self.token_pk)

    def __repr__(self) -> str:
        return (
            f"AgentContext(org={self.organization_slug!r}, worker={self.worker_name!r}, "
            f"token={self.token_public_id!r}, role_id={self.role_id})"
        )


class WorkerPrincipal:
    """The `request.user` of an agent call: a worker, not a person."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, worker_name: str) -> None:
        self.worker_name = worker_name

    def get_username(self) -> str:
        return f"worker:{self.worker_name}"

    def __str__(self) -> str:
        return self.get_username()


@dataclass(frozen=True)
class _Row:
    """One token lookup's answer, before the checks."""

    context: AgentContext
    digest: str
    revoked: bool
    worker_active: bool
    worker_requires_dpop: bool
    # False when the worker acts for a member who has left the organization or whose
    # account is disabled (true for a worker that acts for no one).
    member_active: bool = True


def _lookup_sql() -> str:
    # Model metadata only; the digest is a parameter. A worker that acts for a member
    # also brings that member's email and whether they are still an active member of
    # the token's organization (two primary-key / unique-index probes, only then).
    token, worker = WorkerToken._meta.db_table, Worker._meta.db_table
    role, organization = Role._meta.db_table, Organization._meta.db_table
    user, membership = get_user_model()._meta.db_table, Membership._meta.db_table
    return (
        "SELECT t.id, t.public_id, t.last4, t.expires_at, t.last_used_at, t.digest,"  # noqa: S608 - table names of ours
        " t.revoked_at IS NOT NULL, w.id, w.name, w.status, r.id, r.name, r.rules_version,"
        " o.id, o.slug, o.store_broker_input, t.audience, t.oauth_client, t.dpop_jkt,"
        " w.require_dpop, w.acts_for_id, u.email,"
        " w.acts_for_id IS NULL OR (u.is_active AND EXISTS (SELECT 1 FROM"
        f" {membership} m WHERE m.user_id = w.acts_for_id"
        " AND m.organization_id = t.organization_id))"
        f" FROM {token} t JOIN {worker} w ON w.id = t.worker_id"
        f" JOIN {role} r ON r.id = t.role_id JOIN {organization} o ON o.id = t.organization_id"
        f" LEFT JOIN {user} u ON u.id = w.acts_for_id"
        " WHERE t.digest = %s"
    )


_LOOKUP_SQL = _lookup_sql()


def lookup(digest: str) -> _Row | None:
    """The token with this digest and its worker, role and organization — one indexed
    statement."""
    with connection.cursor() as cursor:
        cursor.execute(_LOOKUP_SQL, [digest])
        row = cursor.fetchone()
    if row is None:
        return None
    context = AgentContext(
        token_pk=row[0],
        token_public_id=row[1],
        token_last4=row[2],
        token_expires_at=row[3],
        token_last_used_at=row[4],
        worker_id=row[7],
        worker_name=row[8],
        role_id=row[10],
        role_name=row[11],
        rules_version=row[12],
        organization_id=row[13],
        organization_slug=row[14],
        store_broker_input=row[15],
        audience=row[16],
        oauth_client=row[17],
        dpop_jkt=row[18],
        acting_for_id=row[20],
        acting_for_label=row[21] or "",
    )
    return _Row(
        context,
        digest=row[5],
        revoked=row[6],
        worker_active=row[9] == WorkerStatus.ACTIVE,
        worker_requires_dpop=row[19],
        member_active=bool(row[22]),
    )


def _www_authenticate(code: str) -> str:
    if code in DPOP_CODES:
        error = "invalid_dpop_proof" if code == "invalid_dpop_proof" else "invalid_token"
        return f'DPoP realm="{REALM}", error="{error}", algs="{dpop.algs_supported()}"'
    if code == "token_missing":
        return f'Bearer realm="{REALM}"'
    return f'Bearer realm="{REALM}", error="invalid_token"'


class WorkerTokenAuthentication(BaseAuthentication):
    """For the agent API only. Views opt in with `authentication_classes`.

    `resource` is the resource URL of the surface (the MCP endpoint passes its own):
    a token bound to an audience (issued by OAuth, RFC 8707) works only there."""

    def __init__(self, resource: str = "") -> None:
        self.resource = resource

    @override
    def authenticate_header(self, request: Request) -> str:
        return _www_authenticate("token_missing")

    def authenticate(self, request: Request) -> tuple[WorkerPrincipal, AgentContext]:
        header = get_authorization_header(request).decode("latin-1").strip()
        scheme, _, raw = header.partition(" ")
        raw = raw.strip()
        scheme = scheme.lower()
        if not header:
            self._fail("token_missing", request)
        if scheme not in ("bearer", "dpop") or not raw:
            # "Basic gry_…" or a bare "gry_…": a token sent the wrong way is malformed.
            sent_a_token = looks_like_token(header) or looks_like_token(raw)
            self._fail("token_malformed" if sent_a_token else "token_missing", request)
        parsed = parse_token(raw, kind="worker")
        if parsed is None:
            self._fail("token_malformed", request)
        found = lookup(parsed.digest)
        if found is None or not digests_match(found.digest, parsed.digest):
            self._fail("token_invalid", request)
        context = found.context
        self._check_state(request, found)
        if context.dpop_jkt or found.worker_requires_dpop or scheme == "dpop":
            self._check_dpop(request, context, raw, scheme)
        audit_context.bind_actor(
            actor_type=audit_context.WORKER,
            actor_id=context.worker_id,
            actor_label=context.worker_name,
            token_id=context.token_public_id,
            worker_id=context.worker_id,
            on_behalf_of_id=context.acting_for_id,
            on_behalf_of_label=context.acting_for_label,
        )
        token_touch(
            token_id=context.token_pk,
            last_used_at=context.token_last_used_at,
            ip=client_ip(request._request),
        )
        return WorkerPrincipal(context.worker_name), context

    def _check_state(self, request: Request, found: _Row) -> None:
        """The token's own state, its worker's and its member's, and its audience."""
        context = found.context
        if found.revoked:
            self._fail("token_invalid", request, context)
        if context.token_expires_at <= timezone.now():
            self._fail("token_expired", request, context)
        if not found.worker_active:
            self._fail("worker_disabled", request, context)
        if not found.member_active:
            self._fail("member_inactive", request, context)
        if context.audience and context.audience != self.resource:
            self._fail("token_audience", request, context)

    def _check_dpop(self, request: Request, context: AgentContext, raw: str, scheme: str) -> None:
        """RFC 9449 §7: a bound token only with the DPoP scheme and a valid proof of its
        key for this request and this token; an unbound one never with the DPoP scheme, and
        not at all when its worker requires DPoP."""
        if not context.dpop_jkt and scheme == "dpop":
            self._fail("dpop_unbound", request, context)
        if not context.dpop_jkt:
            self._fail("dpop_required", request, context)
        if scheme != "dpop":
            self._fail("invalid_dpop_proof", request, context, dpop_reason="scheme")
        django_request = request._request
        try:
            dpop.proof_verify(
                django_request.headers.get("DPoP"),
                method=django_request.method or "GET",
                url=dpop.request_url(django_request),
                access_token=raw,
                jkt=context.dpop_jkt,
            )
        except dpop.InvalidProof as problem:
            self._fail(
                "invalid_dpop_proof",
                request,
                context,
                dpop_reason=problem.reason,
                message=problem.message,
            )

    def _fail(
        self,
        code: str,
        request: Request,
        context: AgentContext | None = None,
        *,
        dpop_reason: str = "",
        message: str = "",
    ) -> NoReturn:
        """Throttled, counted and audited like a personal token's
        (apps.accounts.auth_failures.auth_refuse); the success path never comes here.
        A DPoP refusal says which check failed (`dpop_reason`) and why (`message`)."""
        details: dict[str, Any] = {"token_id": context.token_public_id} if context else {}
        if dpop_reason:
            details["dpop"] = dpop_reason
        auth_refuse(
            request._request,
            surface="agent",
            code=code,
            message=message or FAILURES[code],
            www_authenticate=_www_authenticate(code),
            organization_id=context.organization_id if context is not None else None,
            token_public_id=context.token_public_id if context is not None else "",
            fields=_failure_fields(context),
            details=details,
            metadata={"dpop": dpop_reason} if dpop_reason else None,
        )


def _failure_fields(context: AgentContext | None) -> dict[str, Any]:
    """The failed authentication's actor and target (never the raw token): `context` is
    the authentication's `AgentContext` when the token was found."""
    fields: dict[str, Any] = {"actor_type": ActorType.ANONYMOUS}
    if context is not None:
        fields = {
            "target_type": "workertoken",
            "target_id": context.token_public_id,
            "worker_id": context.worker_id,
            "token_id": context.token_public_id,
            "actor_type": ActorType.WORKER,
            "actor_id": context.worker_id,
            "actor_label": context.worker_name,
        }
        if context.acting_for_id is not None:
            fields["on_behalf_of_id"] = context.acting_for_id
            fields["on_behalf_of_label"] = context.acting_for_label
    return fields
