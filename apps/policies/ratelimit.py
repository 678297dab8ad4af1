"""Per-rule, per-token rate limits and per-worker quotas on the shared cache (Redis in
tests and prod, the file cache in `make run`).

A fixed one-minute window: one `add` and one `incr` per call, both atomic in
Redis, so every server process counts into the same bucket."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.cache import cache

from apps.policies.windows import Quota

WINDOW_SECONDS = 60

# The wall clock the windows are read from (seconds since the epoch). Tests put a clock
# of their own here (the `ratelimit_clock` fixture) rather than wait for a window to turn.
clock: Callable[[], float] = time.time


def rate_limit_check(*, rule_id: int, token_id: str | int, per_minute: int) -> int | None:
    """Count this call. Returns the Retry-After seconds when over the limit, else None."""
    now = clock()
    window = int(now // WINDOW_SECONDS)
    key = f"policies:rl:{rule_id}:{token_id}:{window}"
    cache.add(key, 0, timeout=WINDOW_SECONDS * 2)
    try:
        count = cache.incr(key)
    except ValueError:  # the key expired between add and incr (window edge)
        cache.add(key, 1, timeout=WINDOW_SECONDS * 2)
        count = 1
    if count <= per_minute:
        return None
    return max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))


@dataclass(frozen=True)
class QuotaExceeded:
    retry_after: int  # seconds until the quota's window reopens
    reason: str


def quota_check(
    *, rule_id: int, worker_id: int, quota: Quota, now: float | None = None
) -> QuotaExceeded | None:
    """Count one call of a worker under a rule's quota (per minute, hour or day; fixed
    windows aligned to UTC). Same atomic add + incr as the rate limit, so every process
    counts into one bucket. Returns why and for how long the quota refuses, or None."""
    now = clock() if now is None else now
    period = quota.seconds
    window = int(now // period)
    key = f"policies:quota:{rule_id}:{worker_id}:{quota.per}:{window}"
    cache.add(key, 0, timeout=period * 2)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=period * 2)
        count = 1
    if count <= quota.limit:
        return None
    reopens = (window + 1) * period
    retry_after = max(1, int(reopens - now + 0.999))
    at = datetime.fromtimestamp(reopens, tz=UTC)
    return QuotaExceeded(
        retry_after=retry_after,
        reason=(
            f"Rule #{rule_id} allows {quota.describe()}; this worker has used them. "
            f"The quota reopens at {at:%Y-%m-%d %H:%M} UTC (retry after {retry_after} s)."
        ),
    )
