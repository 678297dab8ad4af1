"""rate_limit_check on the real shared cache (Redis in tests): counted atomically."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from apps.policies.ratelimit import WINDOW_SECONDS, rate_limit_check
from conftest import ManualClock


@pytest.fixture(autouse=True)
def inside_one_window(ratelimit_clock: ManualClock) -> Any:
    """The clock stands 10 s into a window, so one test never straddles two."""
    return ratelimit_clock


def test_allows_up_to_the_limit_then_gives_retry_after() -> None:
    token = uuid.uuid4().hex
    assert [rate_limit_check(rule_id=1, token_id=token, per_minute=3) for _ in range(3)] == [
        None,
        None,
        None,
    ]
    retry_after = rate_limit_check(rule_id=1, token_id=token, per_minute=3)
    assert retry_after == WINDOW_SECONDS - 10  # until the window turns


def test_the_next_window_counts_afresh(inside_one_window: Any) -> None:
    token = uuid.uuid4().hex
    assert rate_limit_check(rule_id=1, token_id=token, per_minute=1) is None
    inside_one_window.advance(WINDOW_SECONDS - 10 - 0.001)  # the last moment of the window
    assert rate_limit_check(rule_id=1, token_id=token, per_minute=1) == 1
    inside_one_window.advance(0.001)
    assert rate_limit_check(rule_id=1, token_id=token, per_minute=1) is None


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
