"""Revocation is exact: once a revocation has returned, no call of that token
reaches an upstream, on any server process — including calls that had already
authenticated when the revocation began: the fence in their attempt statement refuses
them, and a call that passed the fence before the revocation committed had to send
within the send window, which the revocation waits out (apps/workers/fence.py).

Two real server processes with several threads each serve the test database; eight
agents hammer one token through both while the test revokes it. And an agent that
authenticated before the revocation and sends its body after it is refused by the
fence — the test shows it would reach the upstream with the fence replaced by a
function that lets everything through.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db import connection

from apps.audit.models import AuditEvent
from apps.broker.tests.conftest import make_agent
from apps.broker.tests.upstream import RecordingUpstream, Reply
from apps.organizations.models import Organization
from apps.workers.fence import FENCE_FUNCTION, FENCE_FUNCTION_SQL
from apps.workers.services import organization_revoke_all_worker_tokens, token_revoke
from apps.workers.tests.test_cross_process import Server
from scripts.pgbouncer import PgBouncer
from tests.backends import database_url

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def slow_upstream() -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as server:
        # Slow enough that calls are always in flight when the revocation starts.
        server.reply = Reply(delay=0.02)
        yield server


@pytest.fixture(scope="module", params=["direct", "pgbouncer"])
def web_processes(
    request: pytest.FixtureRequest,
    slow_upstream: RecordingUpstream,
    django_db_setup: None,  # noqa: ARG001 - the test database must exist first
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Any]:
    """Two web processes on the test database: directly, or both through one real
    PgBouncer in transaction-pooling mode (the fence holds nothing across statements,
    so it must work there too)."""
    tmp_path = tmp_path_factory.mktemp("web")
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.fail("needs a PostgreSQL database shared by processes")
    env = {"GRANTRY_PROVIDER_URLS": f"sandbox={slow_upstream.url}"}
    with contextlib.ExitStack() as stack:
        if request.param == "pgbouncer":
            bouncer = stack.enter_context(PgBouncer(pool_size=6))
            # Persistent connections, as in production: through PgBouncer they are only
            # client connections; a server connection is lent per transaction.
            env["DATABASE_URL"] = bouncer.url(database_url(settings.DATABASES["default"]))
            env["GRANTRY_TEST_CONN_MAX_AGE"] = "60"
        servers = [Server(tmp_path, name, threads=8, extra_env=env) for name in ("a", "b")]
        try:
            for server in servers:
                server.wait_ready(timeout=120)
            yield servers
        finally:
            for server in servers:
                server.stop()


def _hammer(
    servers: Any, raw: Any, stop: threading.Event, answers: list[tuple[float, int]]
) -> None:
    headers = {"Authorization": f"Bearer {raw}"}
    with httpx.Client(timeout=30) as client:
        n = 0
        while not stop.is_set():
            server = servers[n % len(servers)]
            n += 1
            response = client.post(
                f"{server.base}/api/v1/actions/sandbox.list_projects/execute",
                json={"input": {}},
                headers=headers,
            )
            answers.append((time.monotonic(), response.status_code))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("revoke", ["token", "organization"])
def test_no_call_reaches_the_upstream_after_a_revocation_commits(
    web_processes: Any, slow_upstream: RecordingUpstream, org: Organization, revoke: str
) -> None:
    agent = make_agent(org)
    slow_upstream.requests.clear()
    stop = threading.Event()
    answers: list[tuple[float, int]] = []
    threads = [
        threading.Thread(target=_hammer, args=(web_processes, agent.raw, stop, answers))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 20
        while len(slow_upstream.requests) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(slow_upstream.requests) >= 40, "the agents never got going"
        if revoke == "token":
            token_revoke(token=agent.token, reason="exactness test")
        else:
            organization_revoke_all_worker_tokens(organization=org, confirm=org.slug)
        revoked_at = time.monotonic()
        # The agents keep calling with the revoked token: wait for 40 answers after it.
        deadline = time.monotonic() + 20
        while sum(at > revoked_at + 0.05 for at, _ in answers) < 40:
            assert time.monotonic() < deadline, "the agents stopped calling"
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    late = [r for r in slow_upstream.requests if r.at >= revoked_at]
    assert late == [], f"{len(late)} calls reached the upstream after the revocation committed"
    after = [status for at, status in answers if at > revoked_at + 0.05]
    assert after
    assert set(after) == {401}
    assert {status for _, status in answers} <= {200, 401}
    # Every upstream call has its durable attempt on record, and no attempt was
    # recorded that did not... reach the upstream or fail there.
    attempts = AuditEvent.objects.filter(
        organization=org, action="broker.execute.attempt", token_id=agent.token.public_id
    ).count()
    assert attempts == len(slow_upstream.requests)


# What the attempt statement would be without the fence: no lock, no re-check.
NO_FENCE_SQL = f"""
CREATE OR REPLACE FUNCTION {FENCE_FUNCTION}(p_token bigint, p_worker bigint,
                                            p_organization bigint)
RETURNS boolean VOLATILE LANGUAGE sql AS $$ SELECT true $$;
"""


@pytest.fixture
def fence(request: pytest.FixtureRequest) -> Iterator[str]:
    """ "on": the real fence; "off": the function replaced in the test database."""
    state = request.param
    if state == "off":
        with connection.cursor() as cursor:
            cursor.execute(NO_FENCE_SQL)
    try:
        yield state
    finally:
        with connection.cursor() as cursor:
            cursor.execute(FENCE_FUNCTION_SQL)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fence", ["on", "off"], indirect=True)
@pytest.mark.parametrize("revoke", ["token", "organization"])
def test_a_call_authenticated_before_the_revocation_is_stopped_by_the_fence(
    web_processes: Any, slow_upstream: RecordingUpstream, org: Organization, revoke: str, fence: str
) -> None:
    """The server authenticates once the headers are in; the agent sends its body only
    after the revocation returned. With the fence the call is refused and nothing goes
    upstream; without it (the function replaced) the call goes — which this test sees."""
    agent = make_agent(org)
    slow_upstream.requests.clear()
    body = json.dumps({"input": {}}).encode()
    host, port = "127.0.0.1", web_processes[0].port
    path = "/api/v1/actions/sandbox.list_projects/execute"
    with socket.create_connection((host, port), timeout=30) as agent_socket:
        agent_socket.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {agent.raw}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body[:3]
        )
        time.sleep(1)  # authenticated; the view waits for the rest of the body
        if revoke == "token":
            token_revoke(token=agent.token, reason="exactness test")
        else:
            organization_revoke_all_worker_tokens(organization=org, confirm=org.slug)
        revoked_at = time.monotonic()
        agent_socket.sendall(body[3:])
        answer = agent_socket.makefile("rb").read()
    late = [r for r in slow_upstream.requests if r.at >= revoked_at]
    if fence == "on":
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert b"token_invalid" in answer
        assert late == []
    else:
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert len(late) == 1, "without the fence the call reaches the upstream"
