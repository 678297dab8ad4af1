"""The hot path: one agent call, from decision to answer.

`execute_action()` serves execute, check (dry run) and the MCP tool call;
`proxy_call()` serves the generic passthrough. Both follow one direction:

    evaluate the role (deny by default) → validate the input → audit the
    attempt (fail closed) → credential from custody → egress → audit the
    outcome → answer.

Speed notes (see docs/agent-api.md, "Performance"): the audit attempt and
outcome are two short autocommit transactions, never one transaction held
open across the upstream call (that would hold the org's audit-chain lock
for the whole upstream round trip and serialise every agent of the org).
Nothing on this path constructs an HTTP client, a serializer or a schema
validator per call; the connection's last-used time is written at most once
a minute.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from apps.audit.models import ActorType, Decision, Outcome
from apps.audit.services import audit_record
from apps.broker.results import (
    BrokerResult,
    allowed_headers,
    decode_body,
    fail,
    has_nul,
    input_digest,
)
from apps.connections.custody import secrets_not_needed
from apps.connections.models import Connection, ConnectionStatus
from apps.core.egress import (
    EgressBlocked,
    EgressError,
    EgressTimeout,
    EgressTooLarge,
    egress_request,
)
from apps.core.rows import ModelRows, fixed_query_cursor
from apps.policies.evaluate import Call, UnsafePath, evaluate, normalize_path
from apps.providers.calls import (
    BaseURLParamError,
    InvalidInput,
    build_request,
    resolve_base_url_params,
)
from apps.workers.auth import TOKEN_ROW_WIDTH, load_token, token_lookup_sql
from apps.workers.models import WorkerToken

logger = logging.getLogger(__name__)

LAST_USED_EVERY = timedelta(seconds=60)
REAUTH_MESSAGE = (
    "The connection {name!r} needs to be re-authorised. Ask an admin of the organization to "
    "reconnect it in Grantry (Connections → {name} → Reconnect), then retry."
)


@dataclass
class RequestMeta:
    """What the transport knows about the caller (never the token itself)."""

    request_id: str = ""
    ip: str | None = None
    user_agent: str = ""
    surface: str = "api"  # "api" or "mcp"


@dataclass
class _Audit:
    """Everything an event of this call repeats; built once per call."""

    ctx: Any
    meta: RequestMeta
    base: dict[str, Any] = field(default_factory=dict)

    def write(
        self,
        *,
        action: str,
        outcome: str,
        decision: str,
        reason: str = "",
        connection: Connection | None = None,
        provider: str = "",
        upstream_status: int | None = None,
        latency_ms: int | None = None,
        metadata: dict[str, Any],
        wait_for_flush: bool = True,
    ) -> None:
        ctx = self.ctx
        audit_record(
            wait_for_flush=wait_for_flush,
            action=action,
            organization_id=ctx.organization.pk,
            actor_type=ActorType.WORKER,
            actor_id=ctx.worker.pk,
            actor_label=ctx.worker.name,
            target_type="connection" if connection is not None else "",
            target_id=connection.pk if connection is not None else "",
            target_label=connection.name if connection is not None else "",
            outcome=outcome,
            decision=decision,
            reason=reason[:2000],
            worker_id=ctx.worker.pk,
            token_id=ctx.token_public_id,
            connection_id=connection.pk if connection is not None else None,
            provider=provider,
            upstream_status=upstream_status,
            latency_ms=latency_ms,
            request_id=self.meta.request_id,
            ip=self.meta.ip,
            user_agent=self.meta.user_agent,
            metadata={**self.base, **metadata},
        )


def _refuse(
    audit: _Audit,
    verb: str,
    result: BrokerResult,
    *,
    outcome: str = Outcome.DENIED,
    decision: str = Decision.DENIED,
    connection: Connection | None = None,
    provider: str = "",
) -> BrokerResult:
    """Record a call that ends here, with the answer's message as the reason, and
    return that answer."""
    audit.write(
        action=verb,
        outcome=outcome,
        decision=decision,
        reason=result.message,
        connection=connection,
        provider=provider,
        metadata={},
    )
    return result


def _rules(ctx: Any) -> Any:
    from apps.policies.selectors import role_rules

    return role_rules(ctx.role_id, getattr(ctx, "rules_version", None))


def _role_name(ctx: Any) -> str:
    """The role's name for denial reasons, when authentication already loaded it."""
    token = getattr(ctx, "token", None)
    if token is None or not type(token).role.is_cached(token):
        return ""
    return str(token.role.name)


def _rate_limited(ctx: Any, decision: Any) -> BrokerResult | None:
    if not decision.rate_limit_per_minute:
        return None
    from apps.policies.ratelimit import rate_limit_check

    retry_after = rate_limit_check(
        rule_id=decision.rule_id,
        token_id=ctx.token_public_id,
        per_minute=decision.rate_limit_per_minute,
    )
    if retry_after is None:
        return None
    return fail(
        429,
        "rate_limited",
        f"Rate limit of {decision.rate_limit_per_minute} calls per minute for this "
        f"rule reached; retry after {retry_after} s.",
        headers={"Retry-After": str(retry_after)},
        retry_after=retry_after,
    )


def _record_attempt(audit: _Audit, verb: str, **fields: Any) -> BrokerResult | None:
    """Fail closed: no recorded attempt, no upstream call."""
    try:
        audit.write(
            action=f"{verb}.attempt",
            outcome=Outcome.SUCCESS,
            decision=Decision.ALLOWED,
            metadata={},
            **fields,
        )
    except Exception:
        logger.exception("audit write failed; upstream not called")
        return fail(
            503,
            "audit_unavailable",
            "Grantry could not record this call in the audit trail, so it did not "
            "make it. Retry shortly.",
        )
    return None


_CONNECTION = ModelRows(Connection, "c")
_AUTH_TYPE = _CONNECTION.index("auth_type")
_connection_sql: dict[tuple[str, str], str] = {}


def _connection_query(db: Any, where: str, suffix: str = "") -> str:
    """SELECT every column of Connection with this WHERE, written once per database
    (the queryset version costs more to compile than to run on the hot path)."""
    key = (db.alias, where + suffix)
    sql = _connection_sql.get(key)
    if sql is None:
        quote = db.ops.quote_name
        # Only model metadata and this module's fixed clauses are interpolated.
        sql = (
            f"SELECT {_CONNECTION.columns(db)} "  # noqa: S608
            f"FROM {quote(Connection._meta.db_table)} c WHERE {where}{suffix}"
        )
        _connection_sql[key] = sql
    return sql


def _connections(where: str, params: list[Any], suffix: str = "") -> list[Connection]:
    db = connections[DEFAULT_DB_ALIAS]  # the thread's wrapper, looked up once
    with fixed_query_cursor(db) as cursor:
        cursor.execute(_connection_query(db, where, suffix), params)
        rows = cursor.fetchall()
    return [_CONNECTION.load(row, db, defer=secrets_not_needed(row[_AUTH_TYPE])) for row in rows]


def _connection_filter(
    provider_key: str | None, ref: str | int | None
) -> tuple[str, list[Any], str]:
    """The WHERE clause (organization aside), its parameters and an ORDER/LIMIT suffix
    for the connection an agent names (id if all digits, else name), optionally of one
    provider; or, naming none, the provider's usable connections (two tell ambiguity)."""
    if ref in (None, ""):
        return (
            "c.provider_key = %s AND NOT (c.status = %s)",
            [provider_key, ConnectionStatus.REVOKED.value],
            " ORDER BY c.name LIMIT 2",
        )
    text = str(ref)
    # ASCII digits only ("³".isdigit() is true, int("³") fails) and within bigint.
    by_id = text.isascii() and text.isdigit() and len(text) <= 18
    where = "c.id = %s" if by_id else "c.name = %s"
    params: list[Any] = [int(text) if by_id else text]
    if provider_key is not None:
        where += " AND c.provider_key = %s"
        params.append(provider_key)
    return where, params, ""


def _connection_by(
    organization: Any, ref: str, provider_key: str | None = None
) -> Connection | None:
    """The organization's connection with this id (all digits) or name, optionally of
    one provider: `Connection.objects.for_organization(org).filter(...)` in one statement."""
    where, params, suffix = _connection_filter(provider_key, ref)
    found = _connections("c.organization_id = %s AND " + where, [organization.pk, *params], suffix)
    return found[0] if found else None


@dataclass(frozen=True)
class PrefetchedConnections:
    """The connections `_connection_filter(provider_key, ref)` selects, fetched in the
    token lookup's own statement (see `token_with_connections`)."""

    provider_key: str
    ref: str | int | None
    rows: list[Connection]


_token_with_connections_sql: dict[tuple[str, str], str] = {}


def token_with_connections(
    digest: str, provider_key: str, ref: str | int | None
) -> WorkerToken | None:
    """The agent's token (as `token_by_digest`) and, in the same statement, the
    connections of the token's own organization that this call names: the hot path
    saves a round trip. They are left as `token.prefetched`."""
    db = connections[DEFAULT_DB_ALIAS]
    where, params, suffix = _connection_filter(provider_key, ref)
    key = (db.alias, where + suffix)
    sql = _token_with_connections_sql.get(key)
    if sql is None:
        table = db.ops.quote_name(Connection._meta.db_table)
        # Fixed clauses of this module only; values are parameters. The organization
        # is the token's: the lateral subquery cannot see another tenant's rows.
        lateral = (
            f" LEFT JOIN LATERAL (SELECT c.* FROM {table} c"  # noqa: S608
            f" WHERE c.organization_id = t.organization_id AND {where}{suffix}) c ON TRUE"
        )
        sql = token_lookup_sql(db, extra_columns=_CONNECTION.columns(db), extra_join=lateral)
        _token_with_connections_sql[key] = sql
    with fixed_query_cursor(db) as cursor:
        cursor.execute(sql, [*params, digest])
        rows = cursor.fetchall()
    if not rows:
        return None
    token = load_token(rows[0], db)
    start = TOKEN_ROW_WIDTH
    found = [
        _CONNECTION.load(row, db, start, defer=secrets_not_needed(row[start + _AUTH_TYPE]))
        for row in rows
        if row[start] is not None
    ]
    token.prefetched = PrefetchedConnections(provider_key, ref, found)  # type: ignore[attr-defined]
    return token


def _printable(text: str) -> str:
    return text.replace("\x00", "\\u0000")


def _refuse_nul(audit: _Audit, verb: str) -> BrokerResult:
    """PostgreSQL text refuses NUL: such a request could name nothing, and is refused
    (and audited, with the NUL written out) before any lookup."""
    return _refuse(
        audit,
        verb,
        fail(
            400, "invalid_input", "Text in the request must not contain NUL (\\u0000) characters."
        ),
    )


def _admit(
    ctx: Any, audit: _Audit, verb: str, decision: Any, connection: Connection, provider_key: str
) -> BrokerResult | None:
    """The last gates before an allowed call goes upstream, shared by execute and proxy:
    the rule's rate limit, the connection's health, then the durable attempt event."""
    limited = _rate_limited(ctx, decision)
    if limited is not None:
        return _refuse(audit, verb, limited, connection=connection, provider=provider_key)
    if connection.status != ConnectionStatus.ACTIVE:
        message = REAUTH_MESSAGE.format(name=connection.name)
        return _refuse(
            audit,
            verb,
            fail(409, "needs_reauth", message, connection=connection.name),
            outcome=Outcome.FAILURE,
            decision=Decision.ALLOWED,
            connection=connection,
            provider=provider_key,
        )
    return _record_attempt(
        audit, verb, reason=decision.reason, connection=connection, provider=provider_key
    )


def _resolve_connection(
    organization: Any,
    provider_key: str,
    ref: str | int | None,
    prefetched: PrefetchedConnections | None = None,
) -> tuple[Connection | None, BrokerResult | None]:
    """The connection an agent named (id or name), or the only one that fits."""
    rows: list[Connection] | None = None
    if (
        isinstance(prefetched, PrefetchedConnections)
        and prefetched.provider_key == provider_key
        and prefetched.ref == ref
    ):
        rows = prefetched.rows
    if ref not in (None, ""):
        text = str(ref)
        if rows is None:
            found = _connection_by(organization, text, provider_key)
            rows = [found] if found is not None else []
        if not rows:
            return None, fail(
                404,
                "connection_not_found",
                f"No {provider_key} connection {text!r} in this organization.",
            )
        return rows[0], None
    if rows is None:
        where, params, suffix = _connection_filter(provider_key, None)
        rows = _connections(
            "c.organization_id = %s AND " + where, [organization.pk, *params], suffix
        )
    if len(rows) == 1:
        return rows[0], None
    if not rows:
        return None, fail(
            409,
            "no_connection",
            f"This organization has no {provider_key} connection. Ask an admin to connect "
            f"{provider_key} in Grantry.",
        )
    candidates = Connection.objects.for_organization(organization).filter(provider_key=provider_key)
    names = list(candidates.exclude(status=ConnectionStatus.REVOKED).values_list("name", flat=True))
    return None, fail(
        400,
        "connection_required",
        "More than one connection fits; name one in 'connection'.",
        connections=names,
    )


def _mark_used(connection: Connection) -> None:
    now = timezone.now()
    if connection.last_used_at and now - connection.last_used_at < LAST_USED_EVERY:
        return
    Connection.objects.filter(pk=connection.pk).update(last_used_at=now)


def _egress_failure(exc: EgressError, provider_key: str) -> BrokerResult:
    upstream = {"upstream": provider_key, "host": exc.host, "elapsed_ms": exc.elapsed_ms}
    if isinstance(exc, EgressTimeout):
        return fail(
            504,
            "upstream_timeout",
            f"{provider_key} ({exc.host}) did not answer in time "
            f"(gave up after {exc.elapsed_ms} ms).",
            **upstream,
        )
    if isinstance(exc, EgressTooLarge):
        return fail(
            502,
            "upstream_response_too_large",
            f"{provider_key} ({exc.host}) answered with a body larger than Grantry passes on.",
            **upstream,
        )
    if isinstance(exc, EgressBlocked):
        return fail(
            502, "upstream_blocked", f"Grantry refused to contact {provider_key}: {exc}", **upstream
        )
    return fail(
        502,
        "upstream_unreachable",
        f"Could not reach {provider_key} ({exc.host}) after {exc.elapsed_ms} ms.",
        **upstream,
    )


def _answer(response: Any, provider_key: str) -> BrokerResult:
    headers = allowed_headers(response.headers)
    body, is_json = decode_body(response.content, headers.get("content-type", ""))
    result = BrokerResult(
        upstream_status=response.status_code,
        body=body,
        raw_body=response.content,
        headers=headers,
        is_json=is_json,
        latency_ms=response.elapsed_ms,
    )
    if response.status_code == 429:
        retry = headers.get("retry-after", "")
        result.error = fail(
            429,
            "upstream_rate_limited",
            f"{provider_key} is rate-limiting this connection"
            + (f"; retry after {retry} s." if retry else "."),
            upstream=provider_key,
            upstream_status=429,
            body=body,
            headers={"Retry-After": retry} if retry else {},
        ).error
    return result


def execute_action(
    *,
    ctx: Any,
    action_name: str,
    connection_ref: str | int | None,
    input: dict[str, Any],  # noqa: A002 - the agent API's word
    dry_run: bool = False,
    request_meta: RequestMeta,
) -> BrokerResult:
    """Decide, audit and (unless `dry_run`) perform one catalog action for an agent."""
    from apps.connections import custody
    from apps.providers.registry import UnknownAction, get_action, get_provider

    started = time.monotonic()
    verb = "broker.check" if dry_run else "broker.execute"
    organization = ctx.organization
    nul = has_nul(action_name) or has_nul(connection_ref) or has_nul(input)
    audit = _Audit(
        ctx=ctx,
        meta=request_meta,
        base={
            "role_id": ctx.role_id,
            "action": _printable(action_name) if nul else action_name,
            "surface": request_meta.surface,
            "input_sha256": input_digest(input),
        },
    )
    if nul:
        return _refuse_nul(audit, verb)
    if organization.store_broker_input:
        audit.base["input"] = input

    try:
        action = get_action(action_name, organization=organization)
    except UnknownAction:
        result = fail(
            404,
            "unknown_action",
            f"There is no action {action_name!r}. GET /api/v1/actions lists yours.",
        )
        return _refuse(audit, verb, result)
    provider_key = action.provider_key

    connection, problem = _resolve_connection(
        organization, provider_key, connection_ref, getattr(ctx, "prefetched", None)
    )
    if problem is not None:
        return _refuse(audit, verb, problem, provider=provider_key)
    assert connection is not None

    decision = evaluate(
        _rules(ctx),
        Call.for_action(
            action_name=action.name,
            action_class=str(action.action_class),
            connection_id=connection.pk,
            connection_name=connection.name,
            input=input,
            role_name=_role_name(ctx),
        ),
    )
    if not decision.allowed:
        return _refuse(
            audit,
            verb,
            fail(403, "denied", decision.reason, action=action_name, connection=connection.name),
            connection=connection,
            provider=provider_key,
        )
    audit.base["rule_id"] = decision.rule_id

    provider = get_provider(provider_key, organization=organization)
    try:
        prepared = build_request(
            provider, action, input, base_url_params=getattr(connection, "base_url_params", None)
        )
    except InvalidInput as exc:
        fields = [e.as_dict() for e in exc.errors]
        audit.write(
            action=verb,
            outcome=Outcome.FAILURE,
            decision=Decision.ALLOWED,
            reason="invalid input",
            connection=connection,
            provider=provider_key,
            metadata={"fields": [f["path"] for f in fields]},
        )
        return fail(
            400, "invalid_input", "The input does not match the action's schema.", fields=fields
        )
    except BaseURLParamError as exc:
        message = f"The connection {connection.name!r} is misconfigured: {exc}"
        return _refuse(
            audit,
            verb,
            fail(409, "connection_misconfigured", message, connection=connection.name),
            outcome=Outcome.ERROR,
            decision=Decision.ALLOWED,
            connection=connection,
            provider=provider_key,
        )

    if dry_run:
        audit.write(
            action=verb,
            outcome=Outcome.SUCCESS,
            decision=Decision.ALLOWED,
            reason=decision.reason,
            connection=connection,
            provider=provider_key,
            metadata={},
        )
        return BrokerResult(
            decision="allowed",
            reason=decision.reason,
            rule_id=decision.rule_id,
            connection=connection.name,
        )

    refused = _admit(ctx, audit, verb, decision, connection, provider_key)
    if refused is not None:
        return refused

    result = _call_upstream(
        custody=custody, connection=connection, provider=provider, prepare=lambda: prepared
    )
    _finish(audit, verb, result, connection, provider_key, started)
    return result


def _call_upstream(
    *, custody: Any, connection: Connection, provider: Any, prepare: Any
) -> BrokerResult:
    try:
        auth = custody.auth_for(connection, provider)
    except custody.NeedsReauth:
        return fail(
            409,
            "needs_reauth",
            REAUTH_MESSAGE.format(name=connection.name),
            connection=connection.name,
        )
    call = prepare()
    headers = {**call.headers, **auth.headers}
    params = {**(call.query or {}), **auth.params} or None
    try:
        response = egress_request(
            call.method,
            call.url,
            headers=headers,
            params=params,
            json=call.json_body,
            data=getattr(call, "form_body", None),
            content=getattr(call, "content", None),
        )
    except EgressError as exc:
        return _egress_failure(exc, provider.key)
    return _answer(response, provider.key)


def _finish(
    audit: _Audit,
    verb: str,
    result: BrokerResult,
    connection: Connection,
    provider_key: str,
    started: float,
) -> None:
    """Record the outcome, then the connection's last use.

    The attempt is already durably on record, so the outcome is one statement in
    its own transaction that commits without waiting for the WAL flush
    (`audit_record(wait_for_flush=False)`): it is written and ordered before the
    agent gets its answer, but the request does not wait for the disk. A crash of
    the database server itself within the WAL writer's window (≤ 3 ×
    wal_writer_delay) could lose an outcome, never the attempt. A failure here is
    logged loudly and does not turn a completed upstream call into an error the
    agent might retry."""
    error = result.error
    latency = int((time.monotonic() - started) * 1000)
    if error is None:
        outcome = Outcome.SUCCESS if (result.upstream_status or 0) < 400 else Outcome.FAILURE
    else:
        outcome = Outcome.ERROR if error.status >= 500 else Outcome.FAILURE
    try:
        audit.write(
            action=verb,
            outcome=outcome,
            decision=Decision.ALLOWED,
            reason=error.message if error else "",
            connection=connection,
            provider=provider_key,
            upstream_status=result.upstream_status,
            latency_ms=latency,
            metadata={"error": error.code} if error else {},
            wait_for_flush=False,
        )
    except Exception:
        logger.exception("audit outcome write failed after the upstream call; attempt is recorded")
    try:
        _mark_used(connection)  # at most once a minute; never under the audit chain lock
    except Exception:
        logger.exception("could not record the connection's last use")


def proxy_call(
    *,
    ctx: Any,
    connection_ref: str,
    method: str,
    path: str,
    query: str,
    body: bytes,
    content_type: str,
    request_meta: RequestMeta,
) -> BrokerResult:
    """Pass one raw HTTP call through to a connection's API, if a proxy rule allows it.

    The path is taken relative to the provider's API base URL and cannot leave it:
    `normalize_path` refuses schemes, hosts, '..', encoded tricks and the like."""
    from apps.connections import custody
    from apps.providers.registry import UnknownProvider, get_provider

    started = time.monotonic()
    method = method.upper()
    organization = ctx.organization
    audit = _Audit(
        ctx=ctx,
        meta=request_meta,
        base={
            "role_id": ctx.role_id,
            "method": method,
            "path": path[:500],
            "surface": request_meta.surface,
            "input_sha256": input_digest({"query": query, "body": body.decode("utf-8", "replace")}),
        },
    )
    verb = "broker.proxy"
    if has_nul(path) or has_nul(query) or has_nul(connection_ref):
        audit.base["path"] = _printable(path[:500])
        return _refuse_nul(audit, verb)
    connection = _connection_by(organization, connection_ref)
    if connection is None:
        result = fail(
            404, "connection_not_found", f"No connection {connection_ref!r} in this organization."
        )
        return _refuse(audit, verb, result)
    provider_key = connection.provider_key
    try:
        clean_path = normalize_path("/" + path.lstrip("/") if path else "/")
    except UnsafePath as exc:
        result = fail(400, "unsafe_path", f"The proxy path was rejected: {exc}.")
        return _refuse(audit, verb, result, connection=connection, provider=provider_key)
    if path.startswith("/"):
        # A leading '//' would name a host; normalize_path refused that above only if
        # it survived the lstrip, so refuse it here explicitly.
        result = fail(400, "unsafe_path", "The proxy path must not start with '/'.")
        return _refuse(audit, verb, result, connection=connection, provider=provider_key)
    decision = evaluate(
        _rules(ctx),
        Call.for_proxy(
            provider_key=provider_key,
            method=method,
            path=clean_path,
            connection_id=connection.pk,
            connection_name=connection.name,
            role_name=_role_name(ctx),
        ),
    )
    if not decision.allowed:
        denied = fail(
            403,
            "denied",
            decision.reason,
            method=method,
            path=clean_path,
            connection=connection.name,
        )
        return _refuse(audit, verb, denied, connection=connection, provider=provider_key)
    audit.base["rule_id"] = decision.rule_id
    refused = _admit(ctx, audit, verb, decision, connection, provider_key)
    if refused is not None:
        return refused

    try:
        provider = get_provider(provider_key, organization=organization)
        # Per-connection URL parameters (e.g. a Zendesk subdomain) shape the base URL.
        base = resolve_base_url_params(provider, connection.base_url_params).api_base_url
    except (UnknownProvider, BaseURLParamError) as exc:
        result = fail(
            409,
            "connection_misconfigured",
            f"The connection {connection.name!r} cannot be used: {exc} "
            "Ask an admin to check the connection.",
        )
        return _refuse(
            audit,
            verb,
            result,
            outcome=Outcome.ERROR,
            decision=Decision.ALLOWED,
            connection=connection,
            provider=provider_key,
        )
    url = base.rstrip("/") + clean_path + (f"?{query}" if query else "")

    def prepare() -> _RawCall:
        headers = {"Content-Type": content_type} if body and content_type else {}
        return _RawCall(method=method, url=url, headers=headers, content=body or None)

    result = _call_upstream(
        custody=custody, connection=connection, provider=provider, prepare=prepare
    )
    _finish(audit, verb, result, connection, provider_key, started)
    return result


@dataclass
class _RawCall:
    """A proxy call in the shape of the registry's PreparedCall."""

    method: str
    url: str
    headers: dict[str, str]
    content: bytes | None
    query: dict[str, Any] | None = None
    json_body: Any = None
    form_body: Any = None
