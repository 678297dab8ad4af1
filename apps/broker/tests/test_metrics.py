"""What operators watch (apps/core/metrics.py, grantry/metrics.py): the broker's calls
are counted once each with their decision and outcome, the scrape-time figures read
the database and the broker, `/metrics` is off by default and needs its token, and no
secret or token appears in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from pytest_django.fixtures import Settings

from apps.approvals.tests.conftest import INPUT, make_gated_agent
from apps.audit.partitions import month_partitions
from apps.broker.tests.conftest import CONNECTION_SECRET, Agent
from apps.broker.tests.upstream import RecordingUpstream
from apps.organizations.models import Organization
from grantry.metrics import months_ahead

pytestmark = pytest.mark.django_db
TOKEN = "metrics-token-for-the-test-0123456789"
ROOT = Path(__file__).resolve().parents[3]


def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def call_labels(**labels: str) -> dict[str, str]:
    return {"surface": "api", "provider": "sandbox", **labels}


@pytest.fixture
def metrics_on(settings: Settings) -> None:
    settings.GRANTRY_METRICS_TOKEN = TOKEN


def test_metrics_are_off_by_default_and_need_their_token(
    client: Client, settings: Settings
) -> None:
    settings.GRANTRY_METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 404
    settings.GRANTRY_METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    refused = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x")
    assert refused.status_code == 401
    assert TOKEN not in refused.content.decode()
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


@pytest.mark.usefixtures("metrics_on")
def test_each_call_is_counted_once_with_its_decision_outcome_and_times(
    client: Client, agent: Agent, upstream: RecordingUpstream
) -> None:
    before = scrape(client)
    allowed = call_labels(action="sandbox.list_projects", decision="allowed", outcome="success")
    denied = call_labels(action="sandbox.delete_task", decision="denied", outcome="denied")

    def execute(action: str, body: dict[str, Any]) -> int:
        return client.post(
            f"/api/v1/actions/{action}/execute",
            json.dumps(body),
            content_type="application/json",
            **agent.headers,
        ).status_code

    assert execute("sandbox.list_projects", {"input": {}}) == 200
    assert execute("sandbox.list_projects", {"input": {}}) == 200
    assert execute("sandbox.delete_task", {"input": {"task_id": 1}}) == 403
    after = scrape(client)

    assert len(upstream.requests) == 2
    assert (
        value(after, "grantry_calls_total", **allowed)
        - value(before, "grantry_calls_total", **allowed)
        == 2
    )
    assert (
        value(after, "grantry_calls_total", **denied)
        - value(before, "grantry_calls_total", **denied)
        == 1
    )
    upstream_count = value(after, "grantry_upstream_seconds_count", provider="sandbox")
    assert upstream_count - value(before, "grantry_upstream_seconds_count", provider="sandbox") == 2
    own = value(after, "grantry_call_own_seconds_count", surface="api")
    assert own - value(before, "grantry_call_own_seconds_count", surface="api") == 3
    assert value(after, "grantry_call_own_seconds_sum", surface="api") > value(
        before, "grantry_call_own_seconds_sum", surface="api"
    )
    # Every audit append is timed and counted by action (attempt + outcome per allowed
    # call, one event for the refusal).
    appended = value(after, "grantry_audit_append_seconds_count") - value(
        before, "grantry_audit_append_seconds_count"
    )
    assert appended >= 5
    attempts = {"action": "broker.execute.attempt", "outcome": "success"}
    assert (
        value(after, "grantry_audit_events_total", **attempts)
        - value(before, "grantry_audit_events_total", **attempts)
        == 2
    )
    exposition = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    for secret in (CONNECTION_SECRET, agent.raw, agent.token.public_id, "gry_", TOKEN):
        assert secret not in exposition
    assert agent.organization.slug not in exposition  # no tenant is named


@pytest.mark.usefixtures("metrics_on", "upstream", "admin")
def test_scrape_time_figures_read_the_database_and_the_queue(
    client: Client, org: Organization, owner: User, member: User
) -> None:
    before = scrape(client)
    gated = make_gated_agent(org, creator=owner, owner=member)
    waiting = client.post(
        "/api/v1/actions/sandbox.delete_task/execute",
        json.dumps({"input": INPUT, "reason": "metrics"}),
        content_type="application/json",
        **gated.headers,
    )
    assert waiting.status_code == 202, waiting.content
    after = scrape(client)
    assert (
        value(after, "grantry_approvals_pending") == value(before, "grantry_approvals_pending") + 1
    )
    assert ("grantry_siem_lag_events", ()) in after
    # The test database's migrations create the current month and the ones ahead.
    assert value(after, "grantry_audit_partition_months_ahead") == months_ahead() >= 1
    assert ("grantry_connections_needing_reauth", ()) in after
    queue = os.environ["CELERY_TASK_DEFAULT_QUEUE"]
    if os.environ.get("REDIS_URL"):  # the suite runs with Redis in CI (GRANTRY_REQUIRE_SERVICES)
        assert ("grantry_celery_queue_depth", (("queue", queue),)) in after


@pytest.mark.django_db
def test_months_ahead_counts_the_partitions_after_the_current_month_up_to_a_gap() -> None:
    months = month_partitions()
    assert months_ahead(now=months[-1].start) == 0  # the last month created
    assert months_ahead(now=months[-2].start) == 1
    assert months_ahead(now=datetime(2199, 1, 1, tzinfo=UTC)) == -1  # no partition at all


_CHILD = """
import sys
from apps.core import metrics
for _ in range(int(sys.argv[1])):
    metrics.call_ended(surface="mcp", provider="sandbox", action="a", decision="allowed",
                       outcome="success", seconds=0.01, upstream_seconds=0.005)
"""


def test_the_processes_of_a_host_add_up(tmp_path: Path) -> None:
    """Several web workers: each process writes its figures to PROMETHEUS_MULTIPROC_DIR,
    and one scrape adds them up (prometheus_client's multiprocess mode)."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for count in ("2", "3"):
        subprocess.run([sys.executable, "-c", _CHILD, count], cwd=ROOT, env=env, check=True)
    reader = "import sys\nfrom grantry.metrics import counted\nsys.stdout.write(counted().decode())"
    out = subprocess.run(
        [sys.executable, "-c", reader], cwd=ROOT, env=env, check=True, capture_output=True
    ).stdout.decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(out)
        for s in family.samples
    }
    labels = (
        ("action", "a"),
        ("decision", "allowed"),
        ("outcome", "success"),
        ("provider", "sandbox"),
        ("surface", "mcp"),
    )
    assert samples[("grantry_calls_total", labels)] == 5
