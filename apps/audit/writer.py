"""The one writer of audit events (`audit_record()`, re-exported by apps.audit.services).

`audit_record()` must be called inside the transaction of the change it
describes: if the event cannot be written the exception propagates and the
change rolls back with it. It never swallows errors."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from apps.audit import actions as audit_actions
from apps.audit import fields as audit_fields
from apps.audit.chain import GENESIS_HASH, chain_key_for, content_digest
from apps.audit.exceptions import AuditUnavailable
from apps.audit.models import ActorType, AuditEvent, Outcome
from apps.core import audit_context, metrics
from apps.core.audit_context import user_actor


@dataclass(frozen=True)
class Condition:
    """A SQL predicate the append checks in its own statement (its snapshot), e.g.
    "the agent's token is still valid". Only fixed SQL from the calling app; values
    are named parameters."""

    sql: str
    params: dict[str, Any]


def audit_record(  # noqa: C901 - the one writer: each branch fills one group of columns (target, actor, context)
    *,
    action: str,
    organization: Any = None,
    organization_id: int | None = None,
    actor: Any = None,
    actor_type: str = ActorType.SYSTEM,
    actor_id: str | int = "",
    actor_label: str = "",
    target: Any = None,
    target_type: str = "",
    target_id: str | int = "",
    target_label: str = "",
    outcome: str = Outcome.SUCCESS,
    metadata: dict[str, Any] | None = None,
    only_if: Condition | None = None,
    **fields: Any,
) -> AuditEvent | None:
    """Append one event to one of its organization's chains. Keyword-only by design.

    Who acts, from where and under which request id come from the audit context
    (apps.core.audit_context: set by the middleware and the authenticators, or
    `audit_context()` in a task). A service that names the acting person passes
    `actor` (a user); explicit `actor_type`/`actor_id`, `ip`, `user_agent` and
    `request_id` win over both.

    `action` must be registered (apps.audit.actions); another name raises
    UnregisteredAuditAction before anything is written.
    `target` may be a model instance; its type, pk and str() are recorded.
    Extra `fields` are the broker columns (decision, worker_id, token_id, …).
    Called inside a transaction, the event commits or rolls back with it;
    called in autocommit mode (the broker), it is its own transaction.

    `only_if`: append only if this condition holds in the append's own statement;
    returns None (nothing written) when it does not.
    """
    audit_actions.require(action)  # an unregistered name is refused before anything
    if organization is not None:
        organization_id = organization.pk
    if target is not None:
        target_type = target_type or target._meta.model_name
        target_id = target_id or target.pk
        target_label = target_label or str(target)
    context = audit_context.current()
    if actor_type == ActorType.SYSTEM and not actor_id:
        named = user_actor(actor)
        if named:
            actor_type, actor_id = named["actor_type"], named["actor_id"]
            actor_label = actor_label or named["actor_label"]
        else:  # nobody named: whoever the context says acts
            actor_type, actor_id = context.actor_type, context.actor_id
            actor_label = actor_label or context.actor_label
    if actor_type == context.actor_type and str(actor_id) == context.actor_id:
        # The context's actor: with the token (and worker) they act through.
        if context.token_id:
            fields.setdefault("token_id", context.token_id)
        if context.worker_id is not None:
            fields.setdefault("worker_id", context.worker_id)
        if context.on_behalf_of_id is not None:
            # A worker acting for a member: both principals on every event of the call.
            fields.setdefault("on_behalf_of_id", context.on_behalf_of_id)
            fields.setdefault("on_behalf_of_label", context.on_behalf_of_label)
    values: dict[str, Any] = {
        "chain_key": "",
        "created_at": timezone.now(),
        "organization_id": organization_id,
        "actor_type": actor_type,
        "actor_id": str(actor_id),
        "actor_label": actor_label[:200],
        "action": action,
        "target_type": target_type,
        "target_id": str(target_id),
        "target_label": target_label[:300],
        "outcome": outcome,
        # A client's own X-Request-Id, kept apart from the server's (apps.core.audit_context).
        "metadata": {**audit_context.client_request_metadata(), **(metadata or {})},
        "ip": fields.pop("ip", None) or context.ip,
        "user_agent": (fields.pop("user_agent", None) or context.user_agent)[:300],
        "request_id": fields.pop("request_id", None) or context.request_id,
    }
    # Every other column of the one list (the broker's decision, worker_id, …, and
    # any column added later) comes from `fields`, else its model default.
    for name in audit_fields.WRITTEN:
        if name not in values:
            values[name] = (
                fields.pop(name) if name in fields else audit_fields.BY_NAME[name].default()
            )
    if fields:
        raise TypeError(f"Unknown audit fields: {sorted(fields)}")
    began = time.monotonic()
    try:
        appended = _append(values, only_if=only_if)
    except DatabaseError as exc:
        # Every surface answers 503 `audit_unavailable`; the enclosing change rolls back.
        raise AuditUnavailable from exc
    if appended is None:
        return None
    metrics.audit_appended(
        action=action, outcome=values["outcome"], seconds=time.monotonic() - began
    )
    event_id, seq, prev_hash, hash_ = appended
    event = AuditEvent(id=event_id, seq=seq, prev_hash=prev_hash, hash=hash_, **values)
    event._state.adding = False
    event._state.db = AuditEvent.objects.db
    return event


# The append is ONE statement: lock the head of one chain (skipping a chain another
# transaction is writing), link the hash (PostgreSQL's sha256, same formula as
# chain.link_hash), move the head and insert the event. A chain's row lock is held
# from this statement to the commit; an organization has up to
# GRANTRY_AUDIT_CHAIN_SHARDS chains, so concurrent appends of one organization take
# different chains instead of queueing on one lock.
# The columns are the one list (apps.audit.fields); every one other than the chain's
# own (seq, prev_hash, hash) is covered by the content digest.
_COLUMNS = audit_fields.WRITTEN
_CASTS = {"json": "::jsonb", "ip": "::inet"}
_JSON_COLUMNS = audit_fields.of_kind("json", _COLUMNS)


def _cast(name: str) -> str:
    return _CASTS.get(audit_fields.BY_NAME[name].kind, "")


_APPEND_SQL = f"""
WITH ok AS (SELECT {{condition}} AS ok),
prev AS (
    SELECT h.seq, h.hash FROM audit_auditchainhead h, ok
    WHERE ok.ok AND h.chain_key = %(chain_key)s FOR UPDATE OF h{{skip_locked}}
), link AS (
    SELECT seq + 1 AS seq, hash AS prev_hash,
           encode(sha256(convert_to(hash || ':' || (seq + 1)::text || ':' || %(content)s,
                                    'UTF8')), 'hex') AS hash
    FROM prev
), head AS (
    UPDATE audit_auditchainhead SET seq = link.seq, hash = link.hash
    FROM link WHERE audit_auditchainhead.chain_key = %(chain_key)s
), ins AS (
    INSERT INTO audit_auditevent (seq, prev_hash, hash, {", ".join(_COLUMNS)})
    SELECT link.seq, link.prev_hash, link.hash,
           {", ".join(f"%({name})s{_cast(name)}" for name in _COLUMNS)}
    FROM link
    RETURNING id, seq, prev_hash, hash
)
SELECT ok.ok, ins.id, ins.seq, ins.prev_hash, ins.hash,
       EXISTS (SELECT 1 FROM audit_auditchainhead WHERE chain_key = %(chain_key)s)
FROM ok LEFT JOIN ins ON TRUE
"""  # noqa: S608 - column names are constants, values are parameters
_NEW_HEAD_SQL = (
    "INSERT INTO audit_auditchainhead (chain_key, seq, hash) VALUES (%s, 0, %s) "
    "ON CONFLICT (chain_key) DO NOTHING"
)
_append_sql: dict[tuple[bool, str], str] = {}


def _statement(*, skip_locked: bool, condition: str) -> str:
    key = (skip_locked, condition)
    sql = _append_sql.get(key)
    if sql is None:
        sql = _APPEND_SQL.format(
            condition=condition,
            skip_locked=" SKIP LOCKED" if skip_locked else "",
        )
        _append_sql[key] = sql
    return sql


# Each thread (and so each database connection) keeps appending to the chain it
# last got: concurrent writers spread over the chains and stay there.
_preferred = threading.local()


def _shards() -> int:
    return max(1, int(getattr(settings, "GRANTRY_AUDIT_CHAIN_SHARDS", 1)))


def _append(
    values: dict[str, Any],
    *,
    only_if: Condition | None,
) -> tuple[int, int, str, str] | None:
    organization_id = values["organization_id"]
    shards = 1 if organization_id is None else _shards()
    # Start where this thread last got a chain (shard 0 at first), so a quiet
    # organization's trail stays one chain and busy writers settle on different ones.
    start = min(getattr(_preferred, "shard", 0), shards - 1)
    order = [(start + n) % shards for n in range(shards)]
    condition = only_if.sql if only_if is not None else "TRUE"
    base = {
        **{name: json.dumps(values[name]) for name in _JSON_COLUMNS},
        **(only_if.params if only_if else {}),
    }
    # Try each chain without waiting; if every one is busy, wait for the preferred one.
    attempts = [(shard, True) for shard in order] + [(order[0], False)]
    with connection.cursor() as cursor:
        for shard, skip_locked in attempts:
            values["chain_key"] = chain_key_for(organization_id, shard)
            params = {**values, **base, "content": content_digest(values)}
            sql = _statement(skip_locked=skip_locked, condition=condition)
            row = _fetch(cursor, sql, params)
            if row[0] and row[1] is None and not row[5]:
                # The chain has no head yet: create it and ask once more. (A head that
                # exists but is held by another transaction is simply busy: an INSERT
                # here would wait for that transaction.)
                cursor.execute(_NEW_HEAD_SQL, [values["chain_key"], GENESIS_HASH])
                row = _fetch(cursor, sql, params)
            if not row[0]:
                return None  # the condition failed: nothing written
            if row[1] is not None:
                _preferred.shard = shard
                return row[1], row[2], row[3], row[4]
    raise RuntimeError("the audit append found no chain")  # unreachable: the last waits


def _fetch(cursor: Any, sql: str, params: dict[str, Any]) -> Any:
    cursor.execute(sql, params)
    return cursor.fetchone()
