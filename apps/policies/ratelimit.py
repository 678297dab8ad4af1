"""Per-rule, per-token rate limits on the shared cache (Redis in tests and prod).

A fixed one-minute window: one `add` and one `incr` per call, both atomic in
Redis, so every server process counts into the same bucket."""

from __future__ import annotations

import time

from django.core.cache import cache

WINDOW_SECONDS = 60


def rate_limit_check(*, rule_id: int, token_id: str | int, per_minute: int) -> int | None:
    """Count this call. Returns the Retry-After seconds when over the limit, else None."""
    now = time.time()
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
