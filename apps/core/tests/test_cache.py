"""The Redis cache (django-redis when REDIS_URL is set): Django's cache behaviour,
one connection pool per process shared by every thread."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.conf import settings
from django.core.cache import cache, caches

pytestmark = pytest.mark.skipif(
    settings.BACKENDS.redis_url is None,
    reason="this run has no Redis (CI always has it: GRANTRY_REQUIRE_SERVICES=1)",
)


def test_default_cache_is_django_redis_and_behaves_like_a_django_cache() -> None:
    from django_redis.cache import RedisCache

    assert isinstance(caches["default"], RedisCache)
    key = f"cache-test-{uuid.uuid4().hex}"
    assert cache.get(key) is None
    assert cache.add(key, 1, timeout=30) is True
    assert cache.add(key, 2, timeout=30) is False
    assert cache.incr(key) == 2
    cache.set(key, {"a": [1, 2]}, timeout=30)
    assert cache.get(key) == {"a": [1, 2]}
    cache.delete(key)
    assert cache.get(key) is None
    with pytest.raises(ValueError, match="not found"):
        cache.incr(key)  # a missing key, as with every Django cache


def test_threads_share_one_pool_and_increments_are_atomic() -> None:
    from django_redis import get_redis_connection

    key = f"cache-test-{uuid.uuid4().hex}"
    cache.set(key, 0, timeout=30)
    pools: list[object] = []
    errors: list[Exception] = []

    def work(value: int) -> None:
        try:
            pools.append(get_redis_connection("default").connection_pool)
            for _ in range(20):
                caches["default"].incr(key, value)  # a cache object per thread
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({id(pool) for pool in pools}) == 1
    assert cache.get(key) == 20 * sum(range(1, 9))
    cache.delete(key)
