"""SharedRedisCache: Django's Redis cache, one client per process, same behaviour."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache, caches

from apps.core.cache import SharedRedisCache

pytestmark = pytest.mark.skipif(
    settings.CACHES["default"]["BACKEND"] != "apps.core.cache.SharedRedisCache",
    reason="runs where the tests have Redis (the settings pick SharedRedisCache then)",
)


def test_default_cache_is_the_shared_backend_and_behaves_like_redis_cache():
    assert isinstance(caches["default"], SharedRedisCache)
    key = f"h8-cache-{uuid.uuid4().hex}"
    assert cache.get(key) is None
    assert cache.add(key, 1, timeout=30) is True
    assert cache.add(key, 2, timeout=30) is False
    assert cache.incr(key) == 2
    cache.set(key, {"a": [1, 2]}, timeout=30)
    assert cache.get(key) == {"a": [1, 2]}
    cache.delete(key)
    assert cache.get(key) is None


def test_threads_share_one_client_and_see_each_others_writes():
    key = f"h8-cache-{uuid.uuid4().hex}"
    clients = []
    errors = []

    def work(value: int) -> None:
        try:
            thread_cache: Any = caches["default"]  # a new cache object per thread
            clients.append(thread_cache._cache.get_client(write=True))
            thread_cache.add(key, 0, timeout=30)
            thread_cache.incr(key, value)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({id(client) for client in clients}) == 1
    assert cache.get(key) == sum(range(1, 9))
    cache.delete(key)
