"""The one writer of audit events.

`audit_record()` must be called inside the transaction of the change it
describes: if the event cannot be written the exception propagates and the
change rolls back with it. It never swallows errors."""

from __future__ import annotations

import json
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import DatabaseError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.audit import fields as audit_fields
from apps.audit.chain import GENESIS_HASH, chain_key_for, content_digest
from apps.audit.exceptions import AuditUnavailable
from apps.audit.exports import export_stream
from apps.audit.models import (
    ActorType,
    AuditEvent,
    AuditExport,
    ExportStatus,
    Outcome,
)
from apps.core import audit_context
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
    wait_for_flush: bool = True,
    only_if: Condition | None = None,
    release_leases: bool = False,
    **fields: Any,
) -> AuditEvent | None:
    """Append one event to one of its organization's chains. Keyword-only by design.

    Who acts, from where and under which request id come from the audit context
    (apps.core.audit_context: set by the middleware and the authenticators, or
    `audit_context()` in a task). A service that names the acting person passes
    `actor` (a user); explicit `actor_type`/`actor_id`, `ip`, `user_agent` and
    `request_id` win over both.

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
# The columns are the one list (apps.audit.fields); every one other than the chain's
# own (seq, prev_hash, hash) is covered by the content digest.
_COLUMNS = audit_fields.WRITTEN
_CASTS = {"json": "::jsonb", "ip": "::inet"}
_JSON_COLUMNS = audit_fields.of_kind("json", _COLUMNS)


def _cast(name: str) -> str:
    return _CASTS.get(audit_fields.BY_NAME[name].kind, "")


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
           {", ".join(f"%({name})s{_cast(name)}" for name in _COLUMNS)}
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
    actor: Any,
    events: QuerySet[AuditEvent],
    params: dict[str, str],
    fmt: str,
    surface: str = "dashboard",
    proof: bool = False,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Iterator[str]:
    """Record the export, then return the lazy encoded stream of `events`.

    With `proof`, the stream is instead the contiguous slice of the organization's
    chains between `start` and `end`, with links and a signed checkpoint
    (apps.audit.proof; `params` must then hold only start/end)."""
    from apps.audit.proof import check_proof_filter, proof_stream
    from apps.audit.signing import signing_key

    if proof:
        check_proof_filter(params)
        signing_key(organization)  # created (and audited) now, not mid-stream
    audit_record(
        action="audit.exported",
        organization=organization,
        actor=actor,
        target_type="audit_filter",
        target_label=_filter_label(params),
        metadata={
            "filter": params,
            "format": fmt,
            "mode": "direct",
            "surface": surface,
            "proof": proof,
        },
    )
    if proof:
        return proof_stream(fmt, organization, start=start, end=end)
    return export_stream(fmt, events)


@transaction.atomic
def audit_export_request(
    *,
    organization: Any,
    actor: Any,
    params: dict[str, str],
    fmt: str,
    proof: bool = False,
) -> AuditExport:
    """Queue a large export as a Celery job (enqueued after commit)."""
    if proof:
        from apps.audit.proof import check_proof_filter
        from apps.audit.signing import signing_key

        check_proof_filter(params)
        signing_key(organization)
    export = AuditExport.objects.create(
        organization=organization, requested_by=actor, filter=params, format=fmt, proof=proof
    )
    audit_record(
        action="audit.exported",
        organization=organization,
        actor=actor,
        target=export,
        target_label=_filter_label(params),
        metadata={
            "filter": params,
            "format": fmt,
            "mode": "job",
            "export_id": export.pk,
            "proof": proof,
        },
    )
    transaction.on_commit(lambda: _export_enqueue(export))
    return export


def _export_enqueue(export: AuditExport) -> None:
    """Queue the export's job. When the task queue is down the export is marked failed,
    saying why, and the error goes on (503 broker_unavailable): never a job that looks
    queued but never runs."""
    from apps.audit.tasks import run_audit_export

    try:
        run_audit_export.delay(export.pk)
    except Exception:
        AuditExport.objects.filter(pk=export.pk, status=ExportStatus.PENDING).update(
            status=ExportStatus.FAILED,
            error="The task queue was not available; request the export again.",
        )
        raise


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
        done = reported = 0
        for item in source:
            # One row, or a chunk of rows built by the database (exports.CSVChunk).
            done += getattr(item, "rows", 1)
            if done - reported >= PROGRESS_EVERY:
                AuditExport.objects.filter(pk=export.pk).update(rows_done=done)
                reported = done
            yield item
        AuditExport.objects.filter(pk=export.pk).update(rows_done=done)

    name = f"audit-exports/{export.organization_id}/{uuid.uuid4().hex}.{export.format}"
    if export.proof:
        from apps.audit.proof import proof_stream

        data = form.cleaned_data
        stream = proof_stream(
            export.format, export.organization, start=data.get("start"), end=data.get("end")
        )
    else:
        stream = export_stream(export.format, events, progress=counted)
    try:
        with tempfile.TemporaryFile(mode="w+b") as spool:
            for piece in stream:
                spool.write(piece.encode())
            spool.seek(0)
            stored = default_storage.save(name, File(spool))
    except Exception as exc:
        AuditExport.objects.filter(pk=export.pk).update(
            status=ExportStatus.FAILED, error=type(exc).__name__, finished_at=timezone.now()
        )
        raise
    now = timezone.now()
    if export.proof:  # the slice is cut by seq, so count what the time filter promised
        AuditExport.objects.filter(pk=export.pk).update(rows_done=export.rows_total)
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


# --- Verification ------------------------------------------------------------
# Reviewers verify from the dashboard and the API too, not only the CLI. Each
# run is an audit event ("audit.verified"): what was checked and the verdict.


def audit_verify_export(
    *,
    organization: Any,
    actor: Any,
    chunks: Iterable[bytes],
    surface: str = "dashboard",
) -> Any:
    """Check an uploaded export with proof against this organization's own key,
    with the same code as the offline script. Returns an `offline.Report`."""
    from apps.audit import offline
    from apps.audit.models import AuditSigningKeypair

    key = AuditSigningKeypair.objects.filter(organization=organization).defer("private_key").first()
    if key is None:
        report = offline.Report()
        report.problem(None, "This organization has not signed any export yet.")
    else:
        report = offline.verify_bytes(chunks, public_key=key.public_key)
        signed_for = (report.checkpoint or {}).get("organization_id")
        if report.checkpoint is not None and signed_for != organization.pk:
            report.problem(None, "The checkpoint was issued for another organization.")
    _record_verification(organization, actor, surface, "export", report.as_dict())
    return report


def audit_verify_trail(
    *,
    organization: Any,
    actor: Any,
    surface: str = "dashboard",
) -> list[Any]:
    """Verify every chain of the organization in the database (`ChainReport`s)."""
    from apps.audit.verify import verify_chains

    reports = verify_chains(organization_ids=[organization.pk])
    summary = {
        "ok": all(r.ok for r in reports),
        "events": sum(r.count for r in reports),
        "chains": [str(r) for r in reports],
    }
    _record_verification(organization, actor, surface, "trail", summary)
    return reports


def _record_verification(
    organization: Any,
    actor: Any,
    surface: str,
    kind: str,
    result: dict[str, Any],
) -> None:
    problems = result.get("problems") or []
    audit_record(
        action="audit.verified",
        organization=organization,
        actor=actor,
        target_type="audit_trail",
        target_label=f"{kind}: {'ok' if result['ok'] else 'FAILED'}",
        outcome=Outcome.SUCCESS if result["ok"] else Outcome.FAILURE,
        metadata={
            "kind": kind,
            "surface": surface,
            "ok": result["ok"],
            "events": result.get("events", 0),
            "problems": [p["message"] if isinstance(p, dict) else str(p) for p in problems][:10],
            "key_id": result.get("key_id", ""),
        },
    )


# --- Streaming to SIEM sinks -------------------------------------------------
# At-least-once: a sink's cursor ({chain_key: last delivered seq}) moves only
# after its SIEM accepted the batch, so a batch may arrive twice (after a crash
# between the two) but never not at all; every event carries its chain key, seq
# and hash for the receiver to deduplicate and find gaps.

SINK_BATCH = 200
SINK_MAX_ATTEMPTS = 8
SINK_MAX_BACKOFF_SECONDS = 600


@transaction.atomic
def audit_sink_create(  # noqa: C901 - flat guard clauses, one per sink field
    *,
    organization: Any,
    name: str,
    kind: str,
    format: str = "jsonl",  # the model's word
    url: str = "",
    host: str = "",
    port: int | None = None,
    ca_pem: str = "",
    secret: str = "",
    start: str = "now",
    actor: Any = None,
) -> Any:
    """A new sink. `start="now"` streams events from now on; "beginning" the whole trail."""
    from django.core.exceptions import ValidationError

    from apps.audit.models import AuditSink, SinkFormat, SinkKind
    from apps.audit.proof import chain_heads
    from apps.core.egress.guard import destination_refusal, url_refusal

    errors: dict[str, list[str]] = {}
    if kind not in SinkKind.values:
        errors["kind"] = ["Choose a webhook or syslog."]
    if kind == SinkKind.WEBHOOK:
        # The egress guard's own policy (scheme, https, no private or metadata
        # address), so a sink that could never deliver is refused now, with why.
        refusal = url_refusal(url) if url else "Enter the webhook's https:// URL."
        if refusal:
            errors["url"] = [refusal]
        if format not in SinkFormat.values:
            errors["format"] = ["Choose a format."]
        if not secret:
            errors["secret"] = ["Enter the HMAC key or the SIEM's token."]
    if kind == SinkKind.SYSLOG:
        format = SinkFormat.JSONL
        if not port or not 1 <= int(port) <= 65535:
            errors["port"] = ["Enter the TLS port (usually 6514)."]
        if not host:
            errors["host"] = ["Enter the syslog server's host name."]
        elif (refusal := destination_refusal(host, int(port or 6514))) is not None:
            errors["host"] = [refusal]
    if secret and any(ord(c) < 32 or ord(c) == 127 for c in secret):
        errors["secret"] = [
            "The secret may not contain a line break or another control character: it is "
            "sent in an HTTP header (Splunk, Datadog) or as an HMAC key, and a line break "
            "there would forge headers."
        ]
    if ca_pem.strip():
        import ssl

        try:
            ssl.create_default_context().load_verify_locations(cadata=ca_pem)
        except (ssl.SSLError, ValueError):
            errors["ca_pem"] = ["This is not a PEM certificate."]
    if not name or AuditSink.objects.for_organization(organization).filter(name=name).exists():
        errors["name"] = ["Enter a name not used by another sink."]
    if errors:
        raise ValidationError(errors)
    from apps.audit.signing import signing_key

    signing_key(organization)  # checkpoints published to the sink are signed with it
    cursor = {}
    if start == "now":
        cursor = {head.chain_key: head.seq for head in chain_heads(organization)}
    sink = AuditSink.objects.create(
        organization=organization,
        name=name,
        kind=kind,
        format=format,
        url=url,
        host=host,
        port=port,
        ca_pem=ca_pem,
        secret=secret,
        cursor=cursor,
    )
    audit_record(
        action="audit.sink_created",
        organization=organization,
        target=sink,
        metadata={"kind": kind, "format": format, "destination": sink.destination, "start": start},
        actor=actor,
    )
    return sink


def audit_sink_lag(sink: Any) -> int:
    from apps.audit.proof import chain_heads

    return sum(
        max(0, head.seq - int(sink.cursor.get(head.chain_key, 0)))
        for head in chain_heads(sink.organization)
    )


def audit_sink_deliver(*, sink_id: int, max_batches: int = 50) -> Any:  # noqa: C901 - flat guard clauses around one delivery
    """Send what the sink has not received yet, chain by chain in seq order. Safe to
    run twice at once: the second finds the row locked and leaves. The row lock
    (and its transaction) is held across the sends, each bounded by a 15 s
    timeout and at most `max_batches` batches a run."""
    from apps.audit.models import AuditSink, SinkStatus
    from apps.audit.proof import chain_heads
    from apps.audit.sinks import SinkError, send

    with transaction.atomic():
        sink = (
            AuditSink.objects.select_for_update(skip_locked=True)
            .select_related("organization")
            .filter(pk=sink_id, status=SinkStatus.ACTIVE)
            .first()
        )
        if sink is None:
            return None
        now = timezone.now()
        if sink.next_attempt_at and sink.next_attempt_at > now:
            return sink
        cursor = dict(sink.cursor)
        batches = 0
        try:
            for head in chain_heads(sink.organization):
                while batches < max_batches:
                    done = int(cursor.get(head.chain_key, 0))
                    events = list(
                        AuditEvent.objects.filter(chain_key=head.chain_key, seq__gt=done).order_by(
                            "seq"
                        )[:SINK_BATCH]
                    )
                    if not events:
                        break
                    send(sink, events)
                    batches += 1
                    cursor[head.chain_key] = events[-1].seq
                    sink.delivered += len(events)
                    sink.last_success_at = timezone.now()
        except SinkError as exc:
            sink.attempts += 1
            sink.last_error, sink.last_error_at = str(exc)[:300], timezone.now()
            delay = min(SINK_MAX_BACKOFF_SECONDS, 2**sink.attempts)
            sink.next_attempt_at = timezone.now() + timedelta(seconds=delay)
            if sink.attempts >= SINK_MAX_ATTEMPTS:
                sink.status = SinkStatus.DEAD_LETTER
                audit_record(
                    action="audit.sink_dead_letter",
                    organization=sink.organization,
                    target=sink,
                    outcome=Outcome.FAILURE,
                    reason=sink.last_error,
                    metadata={"attempts": sink.attempts, "cursor": cursor},
                )
        else:
            if batches:
                sink.attempts, sink.next_attempt_at = 0, None
            if batches and _checkpoint_due(sink):
                _publish_checkpoint(sink, cursor)
        sink.cursor = cursor
        sink.save()
    return sink


def sink_checkpoint_minutes() -> int:
    return int(getattr(settings, "GRANTRY_AUDIT_SINK_CHECKPOINT_MINUTES", 60))


def _checkpoint_due(sink: Any) -> bool:
    last = sink.checkpoint_at
    return last is None or timezone.now() - last >= timedelta(minutes=sink_checkpoint_minutes())


def _publish_checkpoint(sink: Any, cursor: dict[str, int]) -> None:
    """A signed checkpoint of what the sink now holds: a later rewrite of the chain
    would contradict it. A failure is recorded on the sink; the events stay
    delivered and the next run tries again."""
    from apps.audit.proof import signed_checkpoint
    from apps.audit.sinks import SinkError, send_checkpoint

    try:
        send_checkpoint(sink, signed_checkpoint(sink.organization, cursor))
    except SinkError as exc:
        sink.last_error, sink.last_error_at = f"checkpoint: {exc}"[:300], timezone.now()
    else:
        sink.checkpoint_at = timezone.now()


def audit_sink_send_test(*, sink: Any, actor: Any) -> str:
    """Record an `audit.sink_test` event and send it (only it) to the sink now.
    Returns "" on success or the error. The event also reaches the sink in order
    with the rest of the trail (at least once)."""
    from apps.audit.sinks import SinkError, send

    with transaction.atomic():
        event = audit_record(
            action="audit.sink_test",
            organization=sink.organization,
            target=sink,
            metadata={"destination": sink.destination},
            actor=actor,
        )
    assert event is not None  # audit_record returns None only with only_if
    try:
        send(sink, [AuditEvent.objects.get(pk=event.pk)])
    except SinkError as exc:
        return str(exc)
    return ""


@transaction.atomic
def audit_sink_retry(*, sink: Any, actor: Any) -> Any:
    """Take a sink out of dead letter: delivery resumes from its cursor, nothing lost."""
    from apps.audit.models import AuditSink, SinkStatus

    sink = AuditSink.objects.select_for_update().get(pk=sink.pk)
    sink.status, sink.attempts, sink.next_attempt_at = SinkStatus.ACTIVE, 0, None
    sink.save(update_fields=["status", "attempts", "next_attempt_at"])
    audit_record(
        action="audit.sink_resumed",
        organization=sink.organization,
        target=sink,
        actor=actor,
    )
    return sink


@transaction.atomic
def audit_sink_delete(*, sink: Any, actor: Any) -> None:
    audit_record(
        action="audit.sink_deleted",
        organization=sink.organization,
        target_type="auditsink",
        target_id=sink.pk,
        target_label=str(sink),
        metadata={"destination": sink.destination},
        actor=actor,
    )
    sink.delete()
