"""What operators watch: Grantry's Prometheus metrics, defined once (prometheus_client).

The broker's calls, Grantry's own time per call and the upstream's, audit appends
and audit events by action are counted where they happen: `call_ended()` by the
broker pipeline's last audit event of a call, `audit_appended()` by the one audit
writer. Queue-like figures (pending approvals, the Celery queue, SIEM lag) are read
when Prometheus scrapes (grantry/metrics.py, which also serves `/metrics`).

Labels hold only names from bounded sets Grantry defines or an admin configured
(provider keys, action names, decisions, outcomes, surfaces, audit actions): never a
token, secret, path, query, input value or organization. A proxy call is labelled
by its method, never its path; an MCP tool by its name.

With several processes (granian's workers, Celery), set PROMETHEUS_MULTIPROC_DIR to
an empty directory shared by the processes of one host before they start (the
Procfile and `make run` do): prometheus_client then writes each process's figures
there and `/metrics` adds them up.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, disable_created_metrics

# No `_created` series: a start time per label set doubles the output for nothing here.
disable_created_metrics()

# Grantry's own work per call is milliseconds; upstreams take up to the egress deadline.
_OWN_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_UPSTREAM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

CALLS = Counter(
    "grantry_calls",
    "Agent calls by how they ended (the last audit event of each call).",
    ["surface", "provider", "action", "decision", "outcome"],
)
OWN_SECONDS = Histogram(
    "grantry_call_own_seconds",
    "Grantry's own time per agent call: the whole call without the upstream's answer.",
    ["surface"],
    buckets=_OWN_BUCKETS,
)
UPSTREAM_SECONDS = Histogram(
    "grantry_upstream_seconds",
    "Time from sending a call upstream to its answer (or failure).",
    ["provider"],
    buckets=_UPSTREAM_BUCKETS,
)
AUDIT_APPEND_SECONDS = Histogram(
    "grantry_audit_append_seconds",
    "Time of one audit append statement (the one writer).",
    buckets=_OWN_BUCKETS,
)
AUDIT_EVENTS = Counter(
    "grantry_audit_events",
    "Audit events appended, by action and outcome (connection.refresh_failed counts the "
    "failed token refreshes; an event whose transaction later rolled back is counted too).",
    ["action", "outcome"],
)


def call_ended(
    *,
    surface: str,
    provider: str,
    action: str,
    decision: str,
    outcome: str,
    seconds: float,
    upstream_seconds: float | None,
) -> None:
    CALLS.labels(surface, provider or "-", action or "-", decision, outcome).inc()
    own = seconds - (upstream_seconds or 0.0)
    OWN_SECONDS.labels(surface).observe(max(own, 0.0))
    if upstream_seconds is not None:
        UPSTREAM_SECONDS.labels(provider or "-").observe(upstream_seconds)


def audit_appended(*, action: str, outcome: str, seconds: float) -> None:
    AUDIT_APPEND_SECONDS.observe(seconds)
    AUDIT_EVENTS.labels(action, outcome).inc()
