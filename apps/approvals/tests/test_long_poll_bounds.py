"""Long polls are bounded per token and per process, so they cannot take every web
thread (issue 21, item 3: 20 polls from one token made /healthz take 28 s).

A real granian server (one process, the Procfile's 8 threads) gets 100 concurrent
`?wait=10` polls of a pending approval; meanwhile `/healthz?checks=0` answers at
once, and the polls beyond the bound answer at once with the status and
`Retry-After` instead of holding a thread.

"At once" is judged against the waits themselves, not a stopwatch: a health check
answers before the first held poll gives its thread back, and a poll beyond the
bound answers in well under the time it asked to wait. Unbounded, both would have
to wait for a poll's thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.approvals import long_poll
from apps.approvals.tests.conftest import make_gated_agent
from apps.organizations.models import Organization
from apps.workers.services import token_mint
from apps.workers.tests.test_cross_process import Server

THREADS = 8


@pytest.fixture(scope="module")
def server(
    django_db_setup: None,  # noqa: ARG001 - the test database must exist first
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    web = Server(
        tmp_path_factory.mktemp("polls"),
        "web",
        threads=THREADS,
        extra_env={"WEB_THREADS": str(THREADS)},
    )
    try:
        web.wait_ready(timeout=120)
        yield web
    finally:
        web.stop()


@pytest.mark.django_db(transaction=True)
def test_100_concurrent_long_polls_leave_the_server_responsive(
    server: Server,
    org: Organization,
    owner: User,
    member: User,
    admin: User,  # noqa: ARG001 - someone who may approve the pending call
) -> None:
    agent = make_gated_agent(org, creator=owner, owner=member)
    approval = agent.request()
    # Five tokens of the one worker, as five agent processes would hold.
    raws = [agent.raw] + [token_mint(worker=agent.worker)[1] for _ in range(4)]
    url = f"{server.base}/api/v1/approvals/{approval.public_id}?wait=10"
    answers: list[tuple[float, int, str | None]] = []
    started = time.monotonic()

    def poll(raw: str) -> None:
        response = httpx.get(url, headers={"Authorization": f"Bearer {raw}"}, timeout=60)
        answers.append(
            (time.monotonic() - started, response.status_code, response.headers.get("Retry-After"))
        )

    polls = [threading.Thread(target=poll, args=(raws[n % 5],)) for n in range(100)]
    for thread in polls:
        thread.start()
    time.sleep(1.5)  # every poll has arrived
    health: list[float] = []  # when each health check answered, from the start
    for _ in range(5):
        assert httpx.get(f"{server.base}/healthz?checks=0", timeout=60).status_code == 200
        health.append(time.monotonic() - started)
        time.sleep(0.2)
    for thread in polls:
        thread.join()

    assert all(status == 200 for _, status, _ in answers), answers
    assert all(retry_after == "5" for _, _, retry_after in answers)  # still pending
    # At most half the threads wait (at most two polls per token); every other poll
    # answered without waiting its 10 s.
    waited = [at for at, _, _ in answers if at >= 9]
    assert 1 <= len(waited) <= THREADS // 2, sorted(at for at, _, _ in answers)
    # Every health check answered while the held polls still held their threads.
    first_held_back = min(waited)
    assert max(health) < first_held_back, (health, first_held_back)


@pytest.mark.django_db
def test_beyond_the_bound_a_poll_answers_at_once(
    org: Organization,
    owner: User,
    member: User,
    admin: User,  # noqa: ARG001 - someone who may approve the pending call
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In one process: a token's third poll, and any poll once the process's slots
    are taken, answers at once with the status and Retry-After."""
    agent = make_gated_agent(org, creator=owner, owner=member)
    approval = agent.request()
    other_raw = token_mint(worker=agent.worker)[1]
    slots = long_poll.LongPolls(per_process=3, per_token=2)
    monkeypatch.setattr(long_poll, "LONG_POLLS", slots)
    url = f"/api/v1/approvals/{approval.public_id}?wait=30"

    def quick_poll(**headers: Any) -> Any:
        began = time.monotonic()
        response = Client().get(url, **headers)
        assert time.monotonic() - began < 15  # not the 30 s it asked to wait
        assert response.status_code == 200
        assert response.json()["status"] == "pending"
        assert response["Retry-After"] == "5"
        return response

    with ExitStack() as held:
        assert all(held.enter_context(slots.slot(agent.token.pk)) for _ in range(2))
        assert held.enter_context(slots.slot(agent.token.pk)) is False
        quick_poll(**agent.headers)  # the token's two slots are taken
        assert held.enter_context(slots.slot(-1)) is True
        quick_poll(HTTP_AUTHORIZATION=f"Bearer {other_raw}")  # the process's three are
    assert slots.busy() == 0
