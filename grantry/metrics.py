"""`GET /metrics`: Prometheus's text format, for operators (apps/core/metrics.py
defines what the code counts).

Off unless `GRANTRY_METRICS_TOKEN` is set (404), and then only with
`Authorization: Bearer <that token>` (401 otherwise): the figures say how busy each
provider is, which is nobody else's business. Point Prometheus's
`authorization: {credentials_file: …}` at the same value.

Besides the counters and histograms of every process (added up over
`PROMETHEUS_MULTIPROC_DIR` when it is set), each scrape reads, across all
organizations (totals only: no organization is named):

- `grantry_approvals_pending`: calls waiting for a person;
- `grantry_celery_queue_depth`: tasks waiting in the Celery queue;
- `grantry_siem_lag_events` / `grantry_siem_sinks_dead_letter`: audit events not yet
  delivered to active SIEM sinks, and sinks stopped after repeated failures;
- `grantry_connections_needing_reauth`: connections whose refresh can no longer work;
- `grantry_audit_partition_months_ahead`: whole months after the current one whose
  audit partitions exist (alert below 1: at the turn of a month without one, every
  audited action answers 503; -1 means the current month has none).
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu.exceptions import ChannelError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)


class StateCollector(Collector):
    """Figures read from PostgreSQL and the broker at scrape time."""

    def collect(self) -> Iterator[Metric]:
        from apps.approvals.models import Approval, ApprovalStatus
        from apps.audit.models import AuditSink, SinkStatus
        from apps.audit.services.sinks import audit_sink_lag
        from apps.connections.models import Connection, ConnectionStatus

        yield GaugeMetricFamily(
            "grantry_approvals_pending",
            "Agent calls waiting for a person's approval.",
            value=Approval.objects.filter(status=ApprovalStatus.PENDING).count(),
        )
        yield GaugeMetricFamily(
            "grantry_connections_needing_reauth",
            "Connections an admin must reconnect (their refresh no longer works).",
            value=Connection.objects.filter(status=ConnectionStatus.NEEDS_REAUTH).count(),
        )
        active = list(
            AuditSink.objects.select_related("organization").filter(status=SinkStatus.ACTIVE)
        )
        yield GaugeMetricFamily(
            "grantry_siem_lag_events",
            "Audit events not yet delivered to the active SIEM sinks (summed over sinks).",
            value=sum(audit_sink_lag(sink) for sink in active),
        )
        yield GaugeMetricFamily(
            "grantry_siem_sinks_dead_letter",
            "SIEM sinks stopped after repeated delivery failures.",
            value=AuditSink.objects.filter(status=SinkStatus.DEAD_LETTER).count(),
        )
        yield GaugeMetricFamily(
            "grantry_audit_partition_months_ahead",
            "Whole months after the current one whose audit partitions exist "
            "(-1: not even the current month's).",
            value=months_ahead(),
        )
        depth = _queue_depth(settings.CELERY_TASK_DEFAULT_QUEUE)
        if depth is not None:
            gauge = GaugeMetricFamily(
                "grantry_celery_queue_depth", "Tasks waiting in a Celery queue.", labels=["queue"]
            )
            gauge.add_metric([settings.CELERY_TASK_DEFAULT_QUEUE], depth)
            yield gauge


def months_ahead(now: datetime | None = None) -> int:
    """How many consecutive months after the current one have their audit partition;
    -1 when the current month has none."""
    from apps.audit import partitions

    existing = {p.start for p in partitions.month_partitions()}
    month = partitions.month_start(now or datetime.now(UTC))
    ahead = -1
    while month in existing:
        ahead += 1
        month = partitions.add_months(month, 1)
    return ahead


def _queue_depth(queue: str) -> int | None:
    """Messages waiting in `queue` (kombu's passive declare), None if unreadable."""
    from grantry.celery import app

    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            try:
                declared = conn.default_channel.queue_declare(queue=queue, passive=True)
            except ChannelError:  # NOT_FOUND: no worker declared it yet, nothing waits
                return 0
            return int(declared.message_count)
    except Exception as exc:
        logger.warning("metrics: the Celery queue depth is unreadable (%s)", type(exc).__name__)
        return None


_STATE = CollectorRegistry(auto_describe=False)
_STATE.register(StateCollector())


def counted() -> bytes:
    """What the code counted: this process's, or every process's of the host."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def exposition() -> bytes:
    """Every process's figures, then the scrape-time ones."""
    return counted() + generate_latest(_STATE)


def _authorized(request: HttpRequest, expected: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), expected)


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    expected = settings.GRANTRY_METRICS_TOKEN
    if not expected:
        return HttpResponse(status=404)
    if not _authorized(request, expected):
        return HttpResponse(
            "Send the metrics token as 'Authorization: Bearer <GRANTRY_METRICS_TOKEN>'.\n",
            status=401,
            content_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="grantry-metrics"'},
        )
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
