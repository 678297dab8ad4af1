"""Agent authentication: `Authorization: Bearer gry_…`, and nothing else.

On success `request.user` is a `WorkerPrincipal` and `request.auth` an
`AgentContext` (what the broker consumes). Every failure answers 401 with
`WWW-Authenticate: Bearer` and the standard error body, and is audited with
the token's public id when it is known — never with the raw token.

There is no cache: the lookup is one indexed query (token + worker + role +
organization), so a revocation is seen by every process on the next request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone
from rest_framework import status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from apps.audit.services import client_ip
from apps.core.api import APIError
from apps.core.rows import ModelRows, fixed_query_cursor, relate
from apps.organizations.models import Organization
from apps.policies.models import Role
from apps.workers.auth_failures import auth_throttle_check
from apps.workers.models import Worker, WorkerToken
from apps.workers.services import token_auth_failure_record, token_touch
from apps.workers.tokens import digests_match, looks_like_token, parse_token

REALM = "grantry"

FAILURES = {
    "token_missing": "Send the worker token as 'Authorization: Bearer gry_…'.",
    "token_malformed": "The token is not a well-formed Grantry worker token.",
    "token_invalid": "The token is unknown or has been revoked.",
    "token_expired": "The token has expired. Mint or roll a new one.",
    "worker_disabled": "The worker of this token is disabled.",
}


class WorkerPrincipal:
    """The `request.user` of an agent call: a worker, not a person."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def get_username(self) -> str:
        return f"worker:{self.worker.name}"

    def __str__(self) -> str:
        return self.get_username()


@dataclass(frozen=True)
class AgentContext:
    organization: Any
    worker: Worker
    token: WorkerToken
    role_id: int
    token_public_id: str
    # The role's rules version as of this request's token lookup (policies.selectors).
    rules_version: int | None = None
    # Whatever the authenticator fetched along with the token (see `lookup`).
    prefetched: Any = None

    def __repr__(self) -> str:
        return (
            f"AgentContext(org={self.organization.slug!r}, worker={self.worker.name!r}, "
            f"token={self.token_public_id!r}, role_id={self.role_id})"
        )


_TOKEN = ModelRows(WorkerToken, "t")
_WORKER = ModelRows(Worker, "w")
_ROLE = ModelRows(Role, "r")
_ORGANIZATION = ModelRows(Organization, "o")
_TOKEN_ROWS = (_TOKEN, _WORKER, _ROLE, _ORGANIZATION)
TOKEN_ROW_WIDTH = sum(rows.width for rows in _TOKEN_ROWS)
_token_sql: dict[tuple[str, str], str] = {}


def token_lookup_sql(connection: Any, *, extra_columns: str = "", extra_join: str = "") -> str:
    """Token + worker + role + organization by digest: one indexed statement, written
    once per database and extension (the ORM would compile the same join on every
    request). `extra_join` may add a LATERAL subquery correlated with the token `t`
    (the broker fetches the call's connection in the same round trip); its columns,
    `extra_columns`, follow the token's in each row. Only model metadata and the
    caller's fixed SQL are interpolated; values are parameters."""
    key = (connection.alias, extra_columns + extra_join)
    sql = _token_sql.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        selected = ", ".join(rows.columns(connection) for rows in _TOKEN_ROWS)
        if extra_columns:
            selected += ", " + extra_columns
        sql = (
            f"SELECT {selected} FROM {quote(WorkerToken._meta.db_table)} t"  # noqa: S608
            f" INNER JOIN {quote(Worker._meta.db_table)} w ON w.id = t.worker_id"
            f" INNER JOIN {quote(Role._meta.db_table)} r ON r.id = t.role_id"
            f" INNER JOIN {quote(Organization._meta.db_table)} o ON o.id = t.organization_id"
            f"{extra_join} WHERE t.digest = %s"
        )
        _token_sql[key] = sql
    return sql


def load_token(row: Any, db: Any) -> WorkerToken:
    """The token in the first TOKEN_ROW_WIDTH columns, worker, role and organization set."""
    token = _TOKEN.load(row, db)
    offset = _TOKEN.width
    relate(token, "worker", _WORKER.load(row, db, offset))
    offset += _WORKER.width
    relate(token, "role", _ROLE.load(row, db, offset))
    offset += _ROLE.width
    relate(token, "organization", _ORGANIZATION.load(row, db, offset))
    return token


def token_by_digest(digest: str) -> WorkerToken | None:
    """The token with this digest, its worker, role and organization loaded; no cache,
    so a revocation is seen by every process on the next request."""
    db = connections[DEFAULT_DB_ALIAS]  # the thread's wrapper, looked up once
    with fixed_query_cursor(db) as cursor:
        cursor.execute(token_lookup_sql(db), [digest])
        row = cursor.fetchone()
    return None if row is None else load_token(row, db)


def _www_authenticate(code: str) -> str:
    if code == "token_missing":
        return f'Bearer realm="{REALM}"'
    return f'Bearer realm="{REALM}", error="invalid_token"'


class WorkerTokenAuthentication(BaseAuthentication):
    """For the agent API only. Views opt in with `authentication_classes`."""

    def authenticate_header(self, request: Request) -> str:
        return _www_authenticate("token_missing")

    def authenticate(self, request: Request) -> tuple[WorkerPrincipal, AgentContext]:
        auth_throttle_check(request._request)
        header = get_authorization_header(request).decode("latin-1").strip()
        scheme, _, raw = header.partition(" ")
        raw = raw.strip()
        if not header:
            self._fail("token_missing", request)
        if scheme.lower() != "bearer" or not raw:
            # "Basic gry_…" or a bare "gry_…": a token sent the wrong way is malformed.
            sent_a_token = looks_like_token(header) or looks_like_token(raw)
            self._fail("token_malformed" if sent_a_token else "token_missing", request)
        parsed = parse_token(raw, kind="worker")
        if parsed is None:
            self._fail("token_malformed", request)
        token = self.lookup(parsed.digest, request)
        if token is None or not digests_match(token.digest, parsed.digest):
            self._fail("token_invalid", request)
        if token.revoked_at is not None:
            self._fail("token_invalid", request, token)
        if token.is_expired(timezone.now()):
            self._fail("token_expired", request, token)
        if not token.worker.is_active():
            self._fail("worker_disabled", request, token)
        token_touch(token=token, ip=client_ip(request._request))
        context = AgentContext(
            organization=token.organization,
            worker=token.worker,
            token=token,
            role_id=token.role_id,
            token_public_id=token.public_id,
            rules_version=token.role.rules_version,
            prefetched=getattr(token, "prefetched", None),
        )
        return WorkerPrincipal(token.worker), context

    def lookup(self, digest: str, request: Request) -> WorkerToken | None:
        """The token for this digest. A view may fetch more in the same statement by
        defining `lookup_token(digest, request)` (and leave it as `token.prefetched`,
        which the context carries)."""
        view = (request.parser_context or {}).get("view")
        lookup_token = getattr(view, "lookup_token", None)
        if lookup_token is not None:
            found: WorkerToken | None = lookup_token(digest, request)
            return found
        return token_by_digest(digest)

    def _fail(self, code: str, request: Request, token: WorkerToken | None = None) -> NoReturn:
        message = FAILURES[code]
        token_auth_failure_record(code=code, message=message, request=request._request, token=token)
        details = {"token_id": token.public_id} if token is not None else {}
        raise APIError(
            code,
            message,
            status_code=status.HTTP_401_UNAUTHORIZED,
            details=details,
            headers={"WWW-Authenticate": _www_authenticate(code)},
        )
