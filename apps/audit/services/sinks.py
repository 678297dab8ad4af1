"""Streaming the trail to SIEM sinks.

At-least-once: a sink's cursor ({chain_key: last delivered seq}) moves only after its
SIEM accepted the batch, so a batch may arrive twice (after a crash between the two)
but never not at all; every event carries its chain key, seq and hash for the receiver
to deduplicate and find gaps."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit.models import AuditEvent, Outcome
from apps.audit.writer import audit_record

SINK_BATCH = 200
SINK_MAX_ATTEMPTS = 8
SINK_MAX_BACKOFF_SECONDS = 600


def _sink_errors(
    *,
    organization: Any,
    name: str,
    kind: str,
    format: str,
    url: str,
    host: str,
    port: int | None,
    ca_pem: str,
    secret: str,
) -> dict[str, list[str]]:
    """What is wrong with a new sink, field by field (empty: nothing)."""
    from apps.audit.models import AuditSink, SinkKind

    errors: dict[str, list[str]] = {}
    if kind not in SinkKind.values:
        errors["kind"] = ["Choose a webhook or syslog."]
    if kind == SinkKind.WEBHOOK:
        errors.update(_webhook_errors(url=url, format=format, secret=secret))
    if kind == SinkKind.SYSLOG:
        errors.update(_syslog_errors(host=host, port=port))
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
    return errors


def _webhook_errors(*, url: str, format: str, secret: str) -> dict[str, list[str]]:
    from apps.audit.models import SinkFormat
    from apps.core.egress.guard import url_refusal

    errors: dict[str, list[str]] = {}
    # The egress guard's own policy (scheme, https, no private or metadata
    # address), so a sink that could never deliver is refused now, with why.
    refusal = url_refusal(url) if url else "Enter the webhook's https:// URL."
    if refusal:
        errors["url"] = [refusal]
    if format not in SinkFormat.values:
        errors["format"] = ["Choose a format."]
    if not secret:
        errors["secret"] = ["Enter the HMAC key or the SIEM's token."]
    return errors


def _syslog_errors(*, host: str, port: int | None) -> dict[str, list[str]]:
    from apps.core.egress.guard import destination_refusal

    errors: dict[str, list[str]] = {}
    if not port or not 1 <= int(port) <= 65535:
        errors["port"] = ["Enter the TLS port (usually 6514)."]
    if not host:
        errors["host"] = ["Enter the syslog server's host name."]
    elif (refusal := destination_refusal(host, int(port or 6514))) is not None:
        errors["host"] = [refusal]
    return errors


@transaction.atomic
def audit_sink_create(
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

    if kind == SinkKind.SYSLOG:
        format = SinkFormat.JSONL
    errors = _sink_errors(
        organization=organization,
        name=name,
        kind=kind,
        format=format,
        url=url,
        host=host,
        port=port,
        ca_pem=ca_pem,
        secret=secret,
    )
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


def _delivery_failed(sink: Any, exc: Exception, cursor: dict[str, int]) -> None:
    """Back off exponentially; past SINK_MAX_ATTEMPTS the sink is a dead letter (audited)."""
    from apps.audit.models import SinkStatus

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


def audit_sink_deliver(*, sink_id: int, max_batches: int = 50) -> Any:
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
            _delivery_failed(sink, exc, cursor)
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
