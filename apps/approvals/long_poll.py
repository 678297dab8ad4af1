"""How many agent long polls may wait at once in this process.

A waiting poll (`GET /api/v1/approvals/<id>?wait=N`) holds one of the process's
web threads for up to 30 s. Unbounded, a handful of agents polling at once took
every thread and the server stopped answering anything else. So at most
`GRANTRY_LONG_POLLS_PER_PROCESS` polls wait at once in a process (by default half
its `WEB_THREADS`), at most `GRANTRY_LONG_POLLS_PER_TOKEN` of them with one token;
any other poll answers at once with the current status and `Retry-After`, which
an agent treats as it treats a poll that ran out of time.

The count is per process, in memory: nothing to reach, nothing to be down."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings


class LongPolls:
    """Slots for waiting polls: `per_process` in all, `per_token` for any one token."""

    def __init__(self, *, per_process: int, per_token: int) -> None:
        self.per_process = per_process
        self.per_token = per_token
        self._lock = threading.Lock()
        self._holders: Counter[int] = Counter()

    def busy(self) -> int:
        return self._holders.total()

    @contextmanager
    def slot(self, token_pk: int) -> Iterator[bool]:
        """Yields whether this poll may wait; the slot is given back when it ends."""
        with self._lock:
            granted = (
                self._holders.total() < self.per_process
                and self._holders[token_pk] < self.per_token
            )
            if granted:
                self._holders[token_pk] += 1
        try:
            yield granted
        finally:
            if granted:
                with self._lock:
                    self._holders[token_pk] -= 1
                    if not self._holders[token_pk]:
                        del self._holders[token_pk]


LONG_POLLS = LongPolls(
    per_process=settings.GRANTRY_LONG_POLLS_PER_PROCESS,
    per_token=settings.GRANTRY_LONG_POLLS_PER_TOKEN,
)
