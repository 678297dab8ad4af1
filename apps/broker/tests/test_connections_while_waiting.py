"""No PostgreSQL connection is held while a call waits on its upstream (issue 26).

A real granian server with 32 threads and Django's connection pool (4): 64 agents call
an upstream that takes 100 ms. pg_stat_activity, sampled every few milliseconds, never
shows more than the pool's 4 connections of that server. The same server without the
pool (a persistent connection per thread, as before) shows one per busy thread: the
measurement sees the difference."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from django.conf import settings

from apps.broker.tests.conftest import make_agent
from apps.broker.tests.upstream import RecordingUpstream, Reply
from apps.organizations.models import Organization
from apps.workers.tests.test_cross_process import Server
from tests.backends import database_url

POOL = 4
THREADS = 32
CALLS = 64


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as server:
        server.reply = Reply(delay=0.1)
        yield server


def peak_connections(url: str, name: str, stop: threading.Event, peaks: list[int]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [name]
            ).fetchone()
            peaks.append(int(row[0]) if row else 0)
            time.sleep(0.003)


def load(base: str, raw: str) -> list[int]:
    statuses: list[int] = []
    errors: list[str] = []

    def one() -> None:
        with httpx.Client(timeout=60) as client:
            for _ in range(3):
                response = client.post(
                    f"{base}/api/v1/actions/sandbox.list_projects/execute",
                    json={"input": {}},
                    headers={"Authorization": f"Bearer {raw}"},
                )
                statuses.append(response.status_code)
                if response.status_code != 200:
                    errors.append(response.text[:300])

    threads = [threading.Thread(target=one) for _ in range(CALLS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    return statuses


def measure(tmp_path: Path, upstream: RecordingUpstream, raw: str, *, pool: bool) -> int:
    name = f"grantry-wait-{'pool' if pool else 'persistent'}"
    env = {
        "GRANTRY_PROVIDER_URLS": f"sandbox={upstream.url}",
        "GRANTRY_TEST_DB_APPLICATION_NAME": name,
        # A loaded 2-core test machine can stall a thread of 32 for over a second; the
        # send window is not under test here.
        "GRANTRY_SEND_WINDOW": "5",
        **({"GRANTRY_TEST_DB_POOL": str(POOL)} if pool else {"GRANTRY_TEST_CONN_MAX_AGE": "60"}),
    }
    server = Server(tmp_path, name, threads=THREADS, extra_env=env)
    try:
        server.wait_ready(timeout=120)
        stop = threading.Event()
        peaks: list[int] = []
        sampler = threading.Thread(
            target=peak_connections,
            args=(database_url(settings.DATABASES["default"]), name, stop, peaks),
        )
        sampler.start()
        try:
            statuses = load(server.base, raw)
        finally:
            stop.set()
            sampler.join()
        assert set(statuses) == {200}, statuses
        return max(peaks)
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_calls_waiting_on_a_slow_upstream_hold_no_connection(
    tmp_path: Path, upstream: RecordingUpstream, org: Organization
) -> None:
    agent = make_agent(org)
    pooled = measure(tmp_path, upstream, agent.raw, pool=True)
    persistent = measure(tmp_path, upstream, agent.raw, pool=False)
    assert pooled <= POOL, f"{pooled} connections with a pool of {POOL}"
    # Without the pool every busy thread keeps its own: the sampler sees them.
    assert persistent > POOL, f"only {persistent} persistent connections: the sampler is blind"
