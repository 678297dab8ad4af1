"""Django's Redis cache with one Redis client per process.

Django's `RedisCache` builds a new `redis.Redis` object on every operation
(and a new cache object per thread, each with its own connection pools).
Building the client alone costs more CPU than the GET it serves, and the
broker reads the cache on every call. This backend keeps one client per
server and mode (read/write) for the whole process, over one connection pool;
`redis.Redis` is safe to share between threads, and its pool reconnects after
a fork. Behaviour is otherwise Django's own (same serializer, same keys).

Settings: `"BACKEND": "apps.core.cache.SharedRedisCache"`.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property


class SharedRedisCacheClient(RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}
        self._lock = threading.Lock()

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        django_client: Any = self  # Django's private helpers are not in the stubs
        index = django_client._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            with self._lock:
                client = self._clients.get(index)
                if client is None:
                    pool = django_client._get_connection_pool(write)
                    client = django_client._client(connection_pool=pool)
                    self._clients[index] = client
        return client


_shared: dict[tuple[Any, ...], SharedRedisCacheClient] = {}
_shared_lock = threading.Lock()


class SharedRedisCache(RedisCache):
    """`RedisCache` whose per-thread instances share one process-wide client."""

    @cached_property
    def _cache(self) -> SharedRedisCacheClient:  # type: ignore[override]
        backend: Any = self  # Django's private attributes are not in the stubs
        servers, options = backend._servers, backend._options
        key = (tuple(servers), repr(sorted(options.items())))
        client = _shared.get(key)
        if client is None:
            with _shared_lock:
                client = _shared.get(key)
                if client is None:
                    client = SharedRedisCacheClient(servers, **options)
                    _shared[key] = client
        return client
