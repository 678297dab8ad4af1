"""rate_limit_check on the real shared cache (Redis in tests): counted atomically."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from apps.policies.ratelimit import WINDOW_SECONDS, rate_limit_check


@pytest.fixture(autouse=True)
def away_from_window_edge() -> None:
    """Start well inside a window so one test never straddles two."""
    into = time.time() % WINDOW_SECONDS
    if into > WINDOW_SECONDS - 5:
        time.sleep(WINDOW_SECONDS - into + 0.1)


def test_allows_up_to_the_limit_then_gives_retry_after() -> None:
    token = uuid.uuid4().hex
    assert [rate_limit_check(rule_id=1, token_id=token, per_minute=3) for _ in range(3)] == [
        None,
        None,
        None,
    ]
    retry_after = rate_limit_check(rule_id=1, token_id=token, per_minute=3)
    assert retry_after is not None
    assert 1 <= retry_after <= WINDOW_SECONDS


def test_buckets_are_per_rule_and_per_token() -> None:
    token, other = uuid.uuid4().hex, uuid.uuid4().hex
    assert rate_limit_check(rule_id=1, token_id=token, per_minute=1) is None
    assert rate_limit_check(rule_id=1, token_id=token, per_minute=1) is not None
    assert rate_limit_check(rule_id=2, token_id=token, per_minute=1) is None
    assert rate_limit_check(rule_id=1, token_id=other, per_minute=1) is None


def test_concurrent_calls_never_overshoot_the_limit() -> None:
    token = uuid.uuid4().hex
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(
                lambda _: rate_limit_check(rule_id=9, token_id=token, per_minute=25), range(100)
            )
        )
    assert sum(r is None for r in results) == 25
