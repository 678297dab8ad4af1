"""One event loop per process, in a thread of its own, for async clients in sync code.

Grantry's web and Celery processes are synchronous (WSGI threads, task threads);
the `mcp` SDK's client is asynchronous and keeps state across calls (an upstream
session, a stdio child). `run(coroutine_function, timeout=…)` submits a coroutine
to the process's one loop and waits for its result in the calling thread, so
sessions and children live in one place, are shared by every thread of the
process, and outlive the request that opened them.

The loop starts on first use and again in a forked child (a process never uses
its parent's loop or thread). The wait is bounded: past `timeout` the coroutine is
cancelled and `TimeoutError` raised, so a stuck upstream cannot hold a web thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_owner_pid: int | None = None


def _start() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    threading.Thread(target=serve, name="grantry-aioloop", daemon=True).start()
    ready.wait()
    return loop


def loop() -> asyncio.AbstractEventLoop:
    """This process's background loop, started if needed."""
    global _loop, _owner_pid
    pid = os.getpid()
    current = _loop
    if current is not None and _owner_pid == pid and current.is_running():
        return current
    with _lock:
        if _loop is None or _owner_pid != pid or not _loop.is_running():
            _loop, _owner_pid = _start(), pid
        return _loop


def in_loop_thread() -> bool:
    """Whether the caller runs on the background loop itself (where `run` would deadlock)."""
    try:
        return asyncio.get_running_loop() is _loop
    except RuntimeError:
        return False


def run(function: Callable[[], Awaitable[T]], *, timeout: float) -> T:
    """Run `function()` on the background loop and return its result; raise what it
    raised, or TimeoutError (the coroutine cancelled) after `timeout` seconds."""
    if in_loop_thread():
        raise RuntimeError("aioloop.run() called from the background loop itself")

    async def call() -> T:
        return await function()

    future = asyncio.run_coroutine_threadsafe(call(), loop())
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"gave up after {timeout:g} s") from None
