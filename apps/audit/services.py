"""The one writer of audit events.

`audit_record()` must be called inside the transaction of the change it
describes: if the event cannot be written the exception propagates and the
change rolls back with it. It never swallows errors."""

from __future__ import annotations

import json
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import DatabaseError, connection, transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from apps.audit.chain import GENESIS_HASH, HASHED_FIELDS, chain_key_for, content_digest
from apps.audit.exceptions import AuditUnavailable
from apps.audit.exports import export_stream
from apps.audit.models import (
    ActorType,
    AuditEvent,
    AuditExport,
    ExportStatus,
    Outcome,
)
from apps.core.middleware import client_request_metadata, current_request_id


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


@dataclass(frozen=True)
class Condition:
    """A SQL predicate the append checks in its own statement (its snapshot), e.g.
    "the agent's token is still valid". Only fixed SQL from the calling app; values
    are named parameters."""

    sql: str
    params: dict[str, Any]


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
    wait_for_flush: bool = True,
    only_if: Condition | None = None,
    release_leases: bool = False,
    **fields: Any,
) -> AuditEvent | None:
    """Append one event to one of its organization's chains. Keyword-only by design.

    `target` may be a model instance; its type, pk and str() are recorded.
    Extra `fields` are the broker columns (decision, worker_id, token_id, …).
    Called inside a transaction, the event commits or rolls back with it;
    called in autocommit mode (the broker), it is its own transaction.

    `only_if`: append only if this condition holds in the append's own statement;
    returns None (nothing written) when it does not.

    `release_leases`: the same statement gives back the session's advisory locks
    (the broker's revocation leases, apps/workers/leases.py) — the last statement of
    an agent call.

    `wait_for_flush=False` lets the commit return before the WAL reaches disk
    (`synchronous_commit = off` for this transaction, set by the append statement
    itself, so no extra round trip). The event is written and ordered like any other;
    only a crash of the database server within the WAL writer's window could lose it.
    The broker uses it for the outcome of a call whose attempt is already durably
    recorded — nothing else should. Inside an enclosing transaction the setting would
    apply to that whole transaction's commit; the broker runs in autocommit
    (ATOMIC_REQUESTS is off, a test pins it).
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
        # A client's own X-Request-Id, kept apart from the server's (apps.core.middleware).
        "metadata": {**client_request_metadata(), **(metadata or {})},
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
    try:
        appended = _append(
            values, wait_for_flush=wait_for_flush, only_if=only_if, release_leases=release_leases
        )
    except DatabaseError as exc:
        # Every surface answers 503 `audit_unavailable`; the enclosing change rolls back.
        raise AuditUnavailable from exc
    if appended is None:
        return None
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
# Every inserted column other than the chain's own (seq, prev_hash, hash) is covered
# by the content digest, so the insert lists exactly the hashed fields.
_COLUMNS = HASHED_FIELDS
_CASTS = {"metadata": "::jsonb", "ip": "::inet"}
_APPEND_SQL = f"""
WITH {{settings}}ok AS (SELECT {{condition}} AS ok),
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
           {", ".join(f"%({name})s{_CASTS.get(name, '')}" for name in _COLUMNS)}
    FROM link
    RETURNING id, seq, prev_hash, hash
)
SELECT ok.ok, ins.id, ins.seq, ins.prev_hash, ins.hash,
       EXISTS (SELECT 1 FROM audit_auditchainhead WHERE chain_key = %(chain_key)s){{release}}
FROM ok LEFT JOIN ins ON TRUE
"""  # noqa: S608 - column names are constants, values are parameters
# Gives back every session-level advisory lock of this database session (the
# broker's revocation leases) in the statement that ends an agent call.
RELEASE_SQL = "pg_advisory_unlock_all()"
_NEW_HEAD_SQL = (
    "INSERT INTO audit_auditchainhead (chain_key, seq, hash) VALUES (%s, 0, %s) "
    "ON CONFLICT (chain_key) DO NOTHING"
)
_append_sql: dict[tuple[bool, bool, str, bool], str] = {}


def _statement(*, skip_locked: bool, wait_for_flush: bool, condition: str, release: bool) -> str:
    key = (skip_locked, wait_for_flush, condition, release)
    sql = _append_sql.get(key)
    if sql is None:
        # `set_config(..., true)` is transaction-local; joining the CTE makes
        # PostgreSQL evaluate it.
        settings_cte = (
            ""
            if wait_for_flush
            else "cfg AS (SELECT set_config('synchronous_commit', 'off', true)),"
        )
        sql = _APPEND_SQL.format(
            settings=settings_cte,
            condition=condition,
            skip_locked=" SKIP LOCKED" if skip_locked else "",
            release=f", {RELEASE_SQL}" if release else "",
        )
        if not wait_for_flush:
            sql = sql.replace("\nFROM ok LEFT JOIN ins", "\nFROM ok CROSS JOIN cfg LEFT JOIN ins")
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
    wait_for_flush: bool,
    only_if: Condition | None,
    release_leases: bool,
) -> tuple[int, int, str, str] | None:
    organization_id = values["organization_id"]
    shards = 1 if organization_id is None else _shards()
    # Start where this thread last got a chain (shard 0 at first), so a quiet
    # organization's trail stays one chain and busy writers settle on different ones.
    start = min(getattr(_preferred, "shard", 0), shards - 1)
    order = [(start + n) % shards for n in range(shards)]
    condition = only_if.sql if only_if is not None else "TRUE"
    base = {"metadata": json.dumps(values["metadata"]), **(only_if.params if only_if else {})}
    # Try each chain without waiting; if every one is busy, wait for the preferred one.
    attempts = [(shard, True) for shard in order] + [(order[0], False)]
    with connection.cursor() as cursor:
        for shard, skip_locked in attempts:
            values["chain_key"] = chain_key_for(organization_id, shard)
            params = {**values, **base, "content": content_digest(values)}
            sql = _statement(
                skip_locked=skip_locked,
                wait_for_flush=wait_for_flush,
                condition=condition,
                release=release_leases,
            )
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


# --- Exports -----------------------------------------------------------------
# Reviewers export the current filter. Every export, direct or as a job, is
# itself an audit event ("audit.exported") naming who, which filter, which format.


PROGRESS_EVERY = 5000


def export_threshold() -> int:
    return int(getattr(settings, "GRANTRY_AUDIT_EXPORT_ASYNC_THRESHOLD", 100_000))


def export_is_large(events: QuerySet[AuditEvent]) -> bool:
    """More rows than the threshold? Bounded: never counts past threshold + 1."""
    limit = export_threshold()
    return events.order_by().values("id")[limit : limit + 1].exists()


@transaction.atomic
def audit_export_direct(
    *,
    organization: Any,
    user: Any,
    events: QuerySet[AuditEvent],
    params: dict[str, str],
    fmt: str,
    request: HttpRequest | None = None,
    surface: str = "dashboard",
) -> Iterator[str]:
    """Record the export, then return the lazy encoded stream of `events`."""
    audit_record(
        action="audit.exported",
        organization=organization,
        actor_type=ActorType.USER,
        actor_id=user.pk,
        actor_label=user.get_username(),
        target_type="audit_filter",
        target_label=_filter_label(params),
        metadata={"filter": params, "format": fmt, "mode": "direct", "surface": surface},
        request=request,
    )
    return export_stream(fmt, events)


@transaction.atomic
def audit_export_request(
    *,
    organization: Any,
    user: Any,
    params: dict[str, str],
    fmt: str,
    request: HttpRequest | None = None,
) -> AuditExport:
    """Queue a large export as a Celery job (enqueued after commit)."""
    export = AuditExport.objects.create(
        organization=organization, requested_by=user, filter=params, format=fmt
    )
    audit_record(
        action="audit.exported",
        organization=organization,
        actor_type=ActorType.USER,
        actor_id=user.pk,
        actor_label=user.get_username(),
        target=export,
        target_label=_filter_label(params),
        metadata={"filter": params, "format": fmt, "mode": "job", "export_id": export.pk},
        request=request,
    )
    from apps.audit.tasks import run_audit_export

    transaction.on_commit(lambda: run_audit_export.delay(export.pk))
    return export


def audit_export_run(*, export_id: int) -> AuditExport:
    """Write the export file. Not one transaction: progress must be visible while it
    runs. Safe to run twice: a finished or expired export is left alone."""
    from apps.audit.filters import AuditFilterForm

    with transaction.atomic():
        export = (
            AuditExport.objects.select_for_update().select_related("organization").get(pk=export_id)
        )
        if export.status not in (ExportStatus.PENDING, ExportStatus.RUNNING):
            return export
        form = AuditFilterForm(data=export.filter, organization=export.organization)
        if not form.is_valid():
            export.status, export.error = ExportStatus.FAILED, "The stored filter is invalid."
            export.finished_at = timezone.now()
            export.save(update_fields=["status", "error", "finished_at"])
            return export
        events = form.filter(AuditEvent.objects.for_organization(export.organization))
        # A snapshot: events appended while the job runs belong to a later export.
        last = events.order_by("-id").values_list("id", flat=True).first() or 0
        events = events.filter(id__lte=last)
        export.status, export.rows_done = ExportStatus.RUNNING, 0
        export.rows_total = events.count()
        export.save(update_fields=["status", "rows_done", "rows_total"])

    def counted(source: Iterator[Any]) -> Iterator[Any]:
        done = 0
        for row in source:
            done += 1
            if done % PROGRESS_EVERY == 0:
                AuditExport.objects.filter(pk=export.pk).update(rows_done=done)
            yield row
        AuditExport.objects.filter(pk=export.pk).update(rows_done=done)

    name = f"audit-exports/{export.organization_id}/{uuid.uuid4().hex}.{export.format}"
    try:
        with tempfile.TemporaryFile(mode="w+b") as spool:
            for piece in export_stream(export.format, events, progress=counted):
                spool.write(piece.encode())
            spool.seek(0)
            stored = default_storage.save(name, File(spool))
    except Exception as exc:
        AuditExport.objects.filter(pk=export.pk).update(
            status=ExportStatus.FAILED, error=type(exc).__name__, finished_at=timezone.now()
        )
        raise
    now = timezone.now()
    AuditExport.objects.filter(pk=export.pk).update(
        status=ExportStatus.DONE,
        file_path=stored,
        finished_at=now,
        expires_at=now + timedelta(hours=export_ttl_hours()),
    )
    export.refresh_from_db()
    return export


def export_ttl_hours() -> int:
    return int(getattr(settings, "GRANTRY_AUDIT_EXPORT_TTL_HOURS", 24))


@transaction.atomic
def audit_export_expire(*, now: datetime | None = None) -> int:
    """Delete the files of finished exports past their expiry; keep the rows as history."""
    now = now or timezone.now()
    expired = list(AuditExport.objects.expired(now=now).select_for_update(skip_locked=True))
    for export in expired:
        path = export.file_path
        if path:
            transaction.on_commit(partial(default_storage.delete, path))
        export.status, export.file_path = ExportStatus.EXPIRED, ""
        export.save(update_fields=["status", "file_path"])
    return len(expired)


def _filter_label(params: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(params.items()))[:300] or "(no filter)"
